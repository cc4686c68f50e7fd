"""Summaries of each chunk at three resolutions (tracker.lib.summaries), computed for the
chunks already stored. Stored like the points: out of line, not compressed."""

import numpy as np
from django.db import migrations, models

COLUMNS = ("groups_128", "groups_2048", "groups_32768")


def backfill(apps, schema_editor):
    from tracker.lib.summaries import LEVELS, summaries_of

    assert COLUMNS == tuple(f"groups_{size}" for size in LEVELS)
    connection = schema_editor.connection
    with connection.cursor() as read, connection.cursor() as write:
        read.execute(f"SELECT id, steps, values FROM tracker_serieschunk WHERE count >= {LEVELS[0]}")
        while rows := read.fetchmany(200):
            for chunk_id, steps, values in rows:
                groups = summaries_of(np.frombuffer(steps, "<i8"), np.frombuffer(values, "<f8"))
                write.execute(
                    "UPDATE tracker_serieschunk SET groups_128 = %s, groups_2048 = %s, groups_32768 = %s WHERE id = %s",
                    [*groups, chunk_id],
                )


class Migration(migrations.Migration):
    dependencies = [("tracker", "0015_findings_history_and_alerts")]

    operations = [
        *[migrations.AddField("serieschunk", name, models.BinaryField(null=True)) for name in COLUMNS],
        migrations.RunSQL(
            sql=[f'ALTER TABLE tracker_serieschunk ALTER COLUMN "{c}" SET STORAGE EXTERNAL' for c in COLUMNS],
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
