"""Puts an Object Lock retention on each new run-record version (infra/terraform/object_lock.tf).

Invoked by S3 for every object created under <prefix>/_ehrlift/runs/. It locks exactly the
version the event names, so a later overwrite or delete by anyone leaves that version in
place until its retention ends. Only object keys (run ids, table names, part numbers) pass
through here, never object contents.
"""

import datetime
import os
import urllib.parse

import boto3

s3 = boto3.client("s3")
MODE = os.environ["RETENTION_MODE"]
DAYS = int(os.environ["RETENTION_DAYS"])


def handler(event, _context):
    for record in event.get("Records", []):
        obj = record["s3"]["object"]
        version = obj.get("versionId")
        if not version:
            # Versioning is permanent on an Object Lock bucket; a missing id means a bug.
            raise RuntimeError("S3 event without a versionId: is the bucket versioned?")
        created = datetime.datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
        s3.put_object_retention(
            Bucket=record["s3"]["bucket"]["name"],
            Key=urllib.parse.unquote_plus(obj["key"]),
            VersionId=version,
            Retention={"Mode": MODE, "RetainUntilDate": created + datetime.timedelta(days=DAYS)},
        )
