"""The tracker's domain layer: storage of measurements, runs and their lifecycle, studies,
findings, comparisons, the dashboard, access. It reads and writes the models; views, the
admin, management commands and the worker call it. It never imports the worker's code or
torch (a web process serves every page without it), and sends work to the workers by task
name (tracker.core.dispatch)."""
