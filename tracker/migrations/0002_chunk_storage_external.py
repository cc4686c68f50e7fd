"""Packed float64 values are noise to pglz: trying to compress each chunk cost
two thirds of ingest time (bench/ingest.py: ~0.8M -> ~2.6M points/s) for little
saved space. EXTERNAL keeps out-of-line storage without compression."""

from django.db import migrations

COLUMNS = [("tracker_serieschunk", "steps"), ("tracker_serieschunk", "values"), ("tracker_histogram", "counts")]


class Migration(migrations.Migration):
    dependencies = [("tracker", "0001_initial")]

    operations = [
        migrations.RunSQL(
            sql=[f'ALTER TABLE {table} ALTER COLUMN "{column}" SET STORAGE EXTERNAL' for table, column in COLUMNS],
            reverse_sql=[f'ALTER TABLE {table} ALTER COLUMN "{column}" SET STORAGE EXTENDED'
                         for table, column in COLUMNS],
        ),
    ]
