# The job role: what `ehrlift run`, `validate` and `verify` need at s3://BUCKET/PREFIX and
# on the two keys, nothing else. Assumed by the Batch (Fargate/ECS) task and, when the
# eks_* variables are set, by the Kubernetes service account through IRSA.
#
# The execution role is ECS's, not ehrlift's: it pulls the image, writes the container's
# stdout/stderr to CloudWatch Logs and reads the secret_environment values at start. The
# job role has no Logs permission because ehrlift never calls CloudWatch itself: its logs
# are its stderr (--log-format json), shipped by the awslogs driver (or the cluster's log
# agent on EKS).

locals {
  bucket_arn = "arn:${local.partition}:s3:::${var.bucket_name}"
  eks        = var.eks_oidc_provider_arn != ""

  # Direct KMS calls carry ehrlift's encryption context (docs/cloud.md):
  #   preflight:    {ehrlift:project, ehrlift:purpose = "preflight"}   (both keys)
  #   project key:  {ehrlift:project, ehrlift:purpose = "project-key"}
  #   column keys:  {ehrlift:project, ehrlift:table, ehrlift:key = "footer" | "column:NAME"}
  # so every grant requires ehrlift:project = var.project and allows no other context keys.
  ehrlift_context_keys = ["ehrlift:project", "ehrlift:purpose", "ehrlift:table", "ehrlift:key"]

  kms_bucket_statements = [
    {
      sid        = "JobDescribesKey"
      actions    = ["kms:DescribeKey"]
      conditions = []
    },
    {
      # S3 itself calls KMS for SSE-KMS with the caller's permissions. With a bucket key
      # the context is {aws:s3:arn = the bucket's ARN} (the object's ARN without one), not
      # ehrlift's pairs, so this grant is pinned to S3 in this region and to this bucket.
      sid     = "JobUsesKeyThroughS3"
      actions = ["kms:GenerateDataKey", "kms:Decrypt"]
      conditions = [
        { test = "StringEquals", variable = "kms:ViaService", values = ["s3.${var.region}.amazonaws.com"] },
        { test = "StringEquals", variable = "kms:CallerAccount", values = [local.account_id] },
        { test = "StringLike", variable = "kms:EncryptionContext:aws:s3:arn", values = [local.bucket_arn, "${local.bucket_arn}/${local.key_prefix}*"] },
      ]
    },
    {
      # ehrlift's preflight checks it may use the key before writing anything.
      sid     = "JobPreflightsKey"
      actions = ["kms:GenerateDataKey", "kms:Decrypt"]
      conditions = [
        { test = "StringEquals", variable = "kms:EncryptionContext:ehrlift:project", values = [var.project] },
        { test = "StringEquals", variable = "kms:EncryptionContext:ehrlift:purpose", values = ["preflight"] },
        { test = "ForAllValues:StringEquals", variable = "kms:EncryptionContextKeys", values = ["ehrlift:project", "ehrlift:purpose"] },
      ]
    },
  ]

  kms_project_statements = [
    {
      sid        = "JobDescribesKey"
      actions    = ["kms:DescribeKey"]
      conditions = []
    },
    {
      sid     = "JobWrapsAndUnwrapsEhrliftKeys"
      actions = ["kms:GenerateDataKey", "kms:Decrypt"]
      conditions = [
        { test = "StringEquals", variable = "kms:EncryptionContext:ehrlift:project", values = [var.project] },
        { test = "StringEqualsIfExists", variable = "kms:EncryptionContext:ehrlift:purpose", values = ["preflight", "project-key"] },
        { test = "ForAllValues:StringEquals", variable = "kms:EncryptionContextKeys", values = local.ehrlift_context_keys },
      ]
    },
  ]
}

# --- trust --------------------------------------------------------------------------

data "aws_iam_policy_document" "job_trust" {
  statement {
    sid     = "BatchFargateTasks"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  dynamic "statement" {
    for_each = local.eks ? [1] : []
    content {
      sid     = "EksServiceAccount"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.eks_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${var.eks_oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.eks_namespace}:${var.eks_service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${var.eks_oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "job" {
  name               = "${var.name}-${var.project}-job"
  description        = "ehrlift runs of ${var.project}: ${local.dest_url} and its two KMS keys"
  assume_role_policy = data.aws_iam_policy_document.job_trust.json

  lifecycle {
    precondition {
      condition     = var.eks_oidc_provider_arn == "" || var.eks_oidc_issuer != ""
      error_message = "eks_oidc_issuer is required when eks_oidc_provider_arn is set."
    }
  }
}

# --- what the job may do ------------------------------------------------------------

data "aws_iam_policy_document" "job" {
  # HeadBucket and ListObjectsV2 are s3:ListBucket; GetBucketEncryption is
  # s3:GetEncryptionConfiguration. A listing must stay inside the prefix; HeadBucket sends
  # no prefix, hence IfExists.
  statement {
    sid       = "ListThePrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = local.prefix == "" ? ["*"] : [local.prefix, "${local.prefix}/*"]
    }
  }

  statement {
    sid       = "BucketLevel"
    actions   = ["s3:ListBucketMultipartUploads", "s3:GetEncryptionConfiguration", "s3:GetBucketLocation"]
    resources = [local.bucket_arn]
  }

  # PutObject covers PutObject, CopyObject's destination and the multipart calls;
  # GetObject covers GetObject, HeadObject and CopyObject's source. No version-id
  # actions (s3:DeleteObjectVersion, s3:GetObjectVersion): ehrlift never uses them, so the
  # job cannot remove an old version, let alone a locked run record.
  statement {
    sid       = "ObjectsUnderThePrefix"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${local.bucket_arn}/${local.key_prefix}*"]
  }

  dynamic "statement" {
    for_each = local.kms_bucket_statements
    content {
      sid       = "BucketKey${statement.value.sid}"
      actions   = statement.value.actions
      resources = [aws_kms_key.bucket.arn]
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

  dynamic "statement" {
    for_each = local.kms_project_statements
    content {
      sid       = "ProjectKey${statement.value.sid}"
      actions   = statement.value.actions
      resources = [aws_kms_key.project.arn]
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

resource "aws_iam_role_policy" "job" {
  name   = "ehrlift-destination"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

# --- the execution role (ECS agent, not ehrlift) ------------------------------------

data "aws_iam_policy_document" "execution_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-${var.project}-execution"
  description        = "Pulls the ehrlift image and ships its logs (ECS task execution)"
  assume_role_policy = data.aws_iam_policy_document.execution_trust.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullImage"
    actions   = ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.job.arn}:*"]
  }

  dynamic "statement" {
    for_each = length(var.secret_environment) > 0 ? [1] : []
    content {
      sid       = "ReadStartupSecrets"
      actions   = ["secretsmanager:GetSecretValue", "ssm:GetParameters"]
      resources = distinct(values(var.secret_environment))
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "ehrlift-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}
