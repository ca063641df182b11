# Two customer-managed keys:
# - the bucket key: S3's SSE-KMS for every object (the bucket's default and what ehrlift
#   names on every PUT; --kms-key / [destination] kms_key);
# - the project key: ehrlift's own envelope key ([keys] provider = "aws-kms"): it wraps the
#   project key (pseudonyms, tokens, date shifts, the vault) and the Parquet column and
#   footer keys. Whoever may Decrypt with it can reverse tokens: it is kept apart from the
#   bucket key so that reading the Parquet files and re-identifying are separate grants.
#
# Each key policy has the usual account-root statement (administration, and delegation to
# IAM policies in this account) and the job role's grants, rendered from the same
# statements as the role's IAM policy (local.kms_*_statements in iam.tf) so the two
# cannot drift apart. The finalize role (iam.tf) appears only in the bucket key's policy,
# in the statements marked `finalize`; the project key does not name it.

resource "aws_kms_key" "bucket" {
  description             = "${var.name}: SSE-KMS for s3://${var.bucket_name}"
  enable_key_rotation     = true
  deletion_window_in_days = var.key_deletion_window_days
  policy                  = data.aws_iam_policy_document.bucket_key.json
}

resource "aws_kms_alias" "bucket" {
  name          = "alias/${var.name}-${var.project}-s3"
  target_key_id = aws_kms_key.bucket.key_id
}

resource "aws_kms_key" "project" {
  description             = "${var.name}: project key and Parquet column keys of ${var.project}"
  enable_key_rotation     = true
  deletion_window_in_days = var.key_deletion_window_days
  policy                  = data.aws_iam_policy_document.project_key.json
}

resource "aws_kms_alias" "project" {
  name          = "alias/${var.name}-${var.project}-keys"
  target_key_id = aws_kms_key.project.key_id
}

data "aws_iam_policy_document" "bucket_key" {
  statement {
    sid       = "AccountRootAdministersAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = local.kms_bucket_statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = statement.value.finalize ? [aws_iam_role.job.arn, aws_iam_role.finalize.arn] : [aws_iam_role.job.arn]
      }
      dynamic "condition" {
        for_each = statement.value.conditions
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }

  # The run-record locker (object_lock.tf) never reads objects, so it has no grant here.
}

data "aws_iam_policy_document" "project_key" {
  statement {
    sid       = "AccountRootAdministersAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = local.kms_project_statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = [aws_iam_role.job.arn]
      }
      dynamic "condition" {
        for_each = statement.value.conditions
        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}
