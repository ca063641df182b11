# The destination bucket. What ehrlift checks at preflight (default encryption aws:kms)
# is set here, and the bucket policy makes the other guarantees hold for every caller,
# not only for ehrlift.

resource "aws_s3_bucket" "dest" {
  bucket = var.bucket_name
  # Object Lock is enabled for the bucket but with NO default retention: a default
  # would lock every object, and ehrlift keeps rewriting its leases (the run's every 20 s,
  # and one a shard) and deletes parts that were uploaded but never committed. Only run records get a retention, one version
  # at a time (object_lock.tf). Enabling Object Lock also makes versioning permanent.
  object_lock_enabled = true
}

resource "aws_s3_bucket_ownership_controls" "dest" {
  bucket = aws_s3_bucket.dest.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "dest" {
  bucket                  = aws_s3_bucket.dest.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "dest" {
  bucket = aws_s3_bucket.dest.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "dest" {
  bucket = aws_s3_bucket.dest.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.bucket.arn
    }
    # One KMS data key per bucket and period instead of one per object: far fewer KMS
    # calls (ehrlift also sends BucketKeyEnabled on every write).
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "dest" {
  bucket = aws_s3_bucket.dest.id

  # A run killed mid-upload leaves an incomplete multipart upload; the next run aborts
  # the ones it finds, and this rule is the second line for runs that never come back.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  # Versioning keeps every replaced lease and every deleted uncommitted part. Lifecycle
  # removes those old versions after a while; it cannot remove a version whose Object
  # Lock retention has not ended, so locked run records stay regardless.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.dest]
}

data "aws_iam_policy_document" "dest" {
  # Every request must use TLS.
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.dest.arn, "${aws_s3_bucket.dest.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # A write that asks for any encryption other than SSE-KMS is refused. IfExists: S3
  # authorises UploadPart and CompleteMultipartUpload as s3:PutObject too, and those
  # requests carry no encryption header (the upload's encryption was set when it was
  # created), so the classic "deny when the header is absent" (Null = true) would refuse
  # every multipart upload ehrlift makes. A PUT without the header is not a hole: the
  # bucket's default encryption puts it under SSE-KMS with the pinned key anyway.
  statement {
    sid       = "DenyNonKmsEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.dest.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  # ...and under our key only (ehrlift sends the key's ARN, resolved with DescribeKey).
  statement {
    sid       = "DenyOtherKmsKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.dest.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.bucket.arn]
    }
  }

  # SSE-C would hold data under a key S3 and KMS never see.
  statement {
    sid       = "DenyCustomerProvidedKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.dest.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-customer-algorithm"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "dest" {
  bucket = aws_s3_bucket.dest.id
  policy = data.aws_iam_policy_document.dest.json

  depends_on = [aws_s3_bucket_public_access_block.dest]
}
