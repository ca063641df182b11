# The job role: what `ehrlift run`, `validate` and `verify` need at s3://BUCKET/PREFIX and
# on the two keys, nothing else. Assumed by the Batch (Fargate/ECS) task and, when the
# eks_* variables are set, by the Kubernetes service account through IRSA. A shard of a
# sharded run needs nothing more than an unsharded run: its lease
# (_ehrlift/leases/<run-id>/...) is created and renewed with conditional PutObject and
# removed with a conditional DeleteObject, and its units, commit records and shard manifest
# are conditional PutObjects, all under the prefix.
#
# The finalize role: what AWS Batch's `ehrlift finalize` job needs, which is far less. It
# reads the run records and writes the run manifest under PREFIX/_ehrlift/, and uses the
# bucket key only through S3. It cannot read or delete data objects, and it has no grant on
# the project key, so the wrapped project key and the vault it may read stay sealed. (On EKS
# the finalize Job runs as the same service account as the shards, so with the job role.)
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

  # `finalize`: whether the finalize role (Batch) gets the statement too.
  kms_bucket_statements = [
    {
      # ehrlift resolves the key's ARN (sent with every write) with DescribeKey.
      sid        = "JobDescribesKey"
      actions    = ["kms:DescribeKey"]
      finalize   = true
      conditions = []
    },
    {
      # S3 itself calls KMS for SSE-KMS with the caller's permissions. With a bucket key
      # the context is {aws:s3:arn = the bucket's ARN} (the object's ARN without one), not
      # ehrlift's pairs, so this grant is pinned to S3 in this region and to this bucket.
      sid      = "JobUsesKeyThroughS3"
      actions  = ["kms:GenerateDataKey", "kms:Decrypt"]
      finalize = true
      conditions = [
        { test = "StringEquals", variable = "kms:ViaService", values = ["s3.${var.region}.amazonaws.com"] },
        { test = "StringEquals", variable = "kms:CallerAccount", values = [local.account_id] },
        { test = "StringLike", variable = "kms:EncryptionContext:aws:s3:arn", values = [local.bucket_arn, "${local.bucket_arn}/${local.key_prefix}*"] },
      ]
    },
    {
      # ehrlift's preflight checks it may use the key before writing anything.
      sid      = "JobPreflightsKey"
      actions  = ["kms:GenerateDataKey", "kms:Decrypt"]
      finalize = false
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

# --- the finalize role (AWS Batch's finalize job) ------------------------------------

data "aws_iam_policy_document" "finalize_trust" {
  # Batch tasks only: the EKS finalize Job uses the shards' service account (infra/k8s).
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
}

resource "aws_iam_role" "finalize" {
  name               = "${var.name}-${var.project}-finalize"
  description        = "ehrlift finalize of ${var.project}: run records under ${local.dest_url}/_ehrlift/ only"
  assume_role_policy = data.aws_iam_policy_document.finalize_trust.json
}

data "aws_iam_policy_document" "finalize" {
  # `ehrlift finalize` lists the run's records (units.json, commit records, shard
  # manifests) and lists always send a prefix, so no IfExists here: a listing outside
  # PREFIX/_ehrlift/ is refused.
  statement {
    sid       = "ListRunRecords"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.meta_prefix}*"]
    }
  }

  # The run manifest records the bucket's default encryption (GetBucketEncryption): a read
  # of the bucket's configuration, no object.
  statement {
    sid       = "ReadBucketEncryption"
    actions   = ["s3:GetEncryptionConfiguration"]
    resources = [local.bucket_arn]
  }

  # Reads the run state and records, writes the run manifest (a conditional PutObject) and
  # the run state. Nothing outside PREFIX/_ehrlift/, no DeleteObject, no version-id actions.
  statement {
    sid       = "RunRecords"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/${local.meta_prefix}*"]
  }

  dynamic "statement" {
    for_each = [for s in local.kms_bucket_statements : s if s.finalize]
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
}

resource "aws_iam_role_policy" "finalize" {
  name   = "ehrlift-run-records"
  role   = aws_iam_role.finalize.id
  policy = data.aws_iam_policy_document.finalize.json
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
