# Run records under WORM retention, without changing what ehrlift writes.
#
# What S3 offers, and why this shape:
# - Object Lock is a bucket-wide switch (it needs versioning, and it is permanent); a
#   retention is then set per object version, either by the bucket's default retention
#   (every new version, whatever its key: no prefix filter exists) or by the writer
#   (x-amz-object-lock-* headers on the PUT) or afterwards with PutObjectRetention.
# - A default retention on this bucket would lock every part, every replaced lease
#   (_ehrlift/run.lock is rewritten every 20 s, and a sharded run has one lease a shard,
#   _ehrlift/leases/<run-id>/...) and every uncommitted part ehrlift deletes and
#   rewrites: old versions could not be removed until the period ended.
# - ehrlift does not send per-object retention headers today.
# - A separate records bucket would need ehrlift to write there; replicating the prefix
#   to a locked bucket would rely on how S3 treats replicas that carry no retention of
#   their own, and adds a second copy, key grants and a replication role.
#
# So: Object Lock is enabled on the destination bucket with no default retention
# (bucket.tf), and this function sets a retention on each version created under
# <prefix>/_ehrlift/runs/ (commit records and manifests), seconds after it is written.
# ehrlift's deletes without a version id keep working (they add a delete marker); the
# locked version stays until retain-until. The job role has no s3:*ObjectVersion or
# s3:BypassGovernanceRetention permission, so it cannot undo the lock in any mode.
#
# Sharded runs need no change here. What a run rewrites or deletes while it goes on lives
# outside runs/: the shards' leases (_ehrlift/leases/<run-id>/...), the run lease and the
# run state (_ehrlift/state.json). Under runs/<run-id>/ everything is written once and
# never deleted: units.json (the unit list and its assignment to shards), commit records,
# shards/<I>/ (a record per attempt, the shard manifest), manifest.json. The one
# exception, the commit records of a database table without a resume key that starts
# over, is deleted without a version id: that adds a delete marker whatever the lock says,
# the rewrite is a new version, and the locked old versions stay as the record of the
# abandoned attempt. A lock is on a version, never on a key, so it cannot stand in the way
# of a run's writes.
#
# Limits, stated plainly: there is a window of seconds between the write and the lock;
# a failed invocation is retried twice by Lambda and then lands in the dead-letter queue
# below (alarm on it). When ehrlift learns to send retention headers itself, this
# function can go.

data "archive_file" "lock_run_records" {
  type        = "zip"
  source_file = "${path.module}/lambda/lock_run_records.py"
  output_path = "${path.module}/.terraform-build/lock_run_records.zip"
}

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lock_run_records" {
  name               = "${var.name}-${var.project}-lock-run-records"
  description        = "Puts Object Lock retention on ehrlift run records of ${local.dest_url}"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
}

resource "aws_cloudwatch_log_group" "lock_run_records" {
  name              = "/aws/lambda/${var.name}-${var.project}-lock-run-records"
  retention_in_days = var.log_retention_days
}

resource "aws_sqs_queue" "lock_run_records_dlq" {
  name                      = "${var.name}-${var.project}-lock-run-records-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
}

data "aws_iam_policy_document" "lock_run_records" {
  statement {
    sid       = "LockRunRecords"
    actions   = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
    resources = ["${aws_s3_bucket.dest.arn}/${local.runs_prefix}*"]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lock_run_records.arn}:*"]
  }
  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.lock_run_records_dlq.arn]
  }
}

resource "aws_iam_role_policy" "lock_run_records" {
  name   = "lock-run-records"
  role   = aws_iam_role.lock_run_records.id
  policy = data.aws_iam_policy_document.lock_run_records.json
}

resource "aws_lambda_function" "lock_run_records" {
  function_name    = "${var.name}-${var.project}-lock-run-records"
  description      = "Object Lock retention for ehrlift run records under ${local.runs_prefix}"
  role             = aws_iam_role.lock_run_records.arn
  runtime          = "python3.12"
  handler          = "lock_run_records.handler"
  filename         = data.archive_file.lock_run_records.output_path
  source_code_hash = data.archive_file.lock_run_records.output_base64sha256
  timeout          = 30

  environment {
    variables = {
      RETENTION_MODE = var.run_records_retention_mode
      RETENTION_DAYS = tostring(var.run_records_retention_days)
    }
  }

  depends_on = [aws_cloudwatch_log_group.lock_run_records, aws_iam_role_policy.lock_run_records]
}

resource "aws_lambda_function_event_invoke_config" "lock_run_records" {
  function_name          = aws_lambda_function.lock_run_records.function_name
  maximum_retry_attempts = 2
  destination_config {
    on_failure {
      destination = aws_sqs_queue.lock_run_records_dlq.arn
    }
  }
}

resource "aws_lambda_permission" "s3_invokes_lock_run_records" {
  statement_id   = "S3InvokesOnRunRecords"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.lock_run_records.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.dest.arn
  source_account = local.account_id
}

resource "aws_s3_bucket_notification" "dest" {
  bucket = aws_s3_bucket.dest.id

  lambda_function {
    lambda_function_arn = aws_lambda_function.lock_run_records.arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = local.runs_prefix
  }

  depends_on = [aws_lambda_permission.s3_invokes_lock_run_records]
}
