variable "region" {
  description = "AWS region for the bucket, keys and the Batch job (ehrlift reads it from the job's environment)."
  type        = string
}

variable "name" {
  description = "Name stem for the keys' aliases, the IAM roles, the Batch resources and the log group."
  type        = string
  default     = "ehrlift"
}

variable "project" {
  description = "The plan's `project` name. KMS grants are limited to the encryption context ehrlift:project = this value, so it must match the plan exactly."
  type        = string
}

variable "bucket_name" {
  description = "Name of the destination bucket to create (globally unique)."
  type        = string
}

variable "prefix" {
  description = "Prefix inside the bucket the plan writes under (the PREFIX of s3://BUCKET/PREFIX); \"\" for the bucket's root. The job role may touch nothing outside it."
  type        = string
  default     = "ehrlift"
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which S3 aborts a multipart upload that was never completed (a run killed mid-upload; ehrlift also aborts them itself on the next run)."
  type        = number
  default     = 2
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept before lifecycle removes it (the lease is rewritten every 20 s, and retried parts replace earlier ones). Locked run-record versions are kept until their retention ends regardless."
  type        = number
  default     = 30
}

variable "run_records_retention_mode" {
  description = "Object Lock mode put on every run-record version under _ehrlift/runs/: GOVERNANCE (a principal with s3:BypassGovernanceRetention can still remove it) or COMPLIANCE (nobody can, not even the account root, until it expires)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.run_records_retention_mode)
    error_message = "run_records_retention_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "run_records_retention_days" {
  description = "Days each run-record version (commit records, manifests) stays locked after it is written."
  type        = number
  default     = 2557
}

variable "key_deletion_window_days" {
  description = "Waiting period (7-30 days) before a scheduled KMS key deletion happens."
  type        = number
  default     = 30
}

variable "image" {
  description = "Container image of ehrlift (the repository's Dockerfile, or an image built FROM it with the site's plans), e.g. ACCOUNT.dkr.ecr.REGION.amazonaws.com/ehrlift:0.1.0."
  type        = string
}

variable "plan_path" {
  description = "Path of the plan inside the image. For a cloud run the plan should use [keys] provider = \"aws-kms\" with key_id = the project_key_alias output: a local keyring inside a container is lost with it."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the Fargate compute environment (private subnets with a NAT gateway or S3/KMS/ECR/Logs VPC endpoints, and a route to the legacy source)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the Fargate tasks (egress to S3, KMS, ECR, CloudWatch Logs and the legacy source)."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give Fargate tasks a public IP (only for public subnets without NAT)."
  type        = bool
  default     = false
}

variable "max_vcpus" {
  description = "Upper bound of vCPUs the compute environment may run at once."
  type        = number
  default     = 16
}

variable "job_vcpu" {
  description = "vCPUs of one ehrlift run (a Fargate size: 0.25, 0.5, 1, 2, 4, 8 or 16)."
  type        = string
  default     = "2"
}

variable "job_memory_mib" {
  description = "Memory of one ehrlift run in MiB (must be a valid Fargate combination with job_vcpu)."
  type        = number
  default     = 4096
}

variable "shards" {
  description = "Shards of a sharded run in the submit_sharded_run output (the array size, 2 to 10,000). Only that output uses it: the size is chosen at each submit. More shards than max_vcpus / job_vcpu wait for capacity."
  type        = number
  default     = 4

  validation {
    condition     = var.shards >= 2 && var.shards <= 10000 && floor(var.shards) == var.shards
    error_message = "shards must be a whole number from 2 to 10000 (AWS Batch's array sizes); one shard is a plain job without --array-properties."
  }
}

variable "job_timeout_seconds" {
  description = "Batch stops an attempt of `ehrlift run` (of each shard, in an array job) after this many seconds (the next attempt resumes from the shard's last commit)."
  type        = number
  default     = 86400
}

variable "job_attempts" {
  description = "Attempts per job, and per child of an array job (1-10). Only exit status 3 (transient) is retried; 1, 2 and 4 end the job."
  type        = number
  default     = 3
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the job's logs (ehrlift logs names and counts, never cell values)."
  type        = number
  default     = 365
}

variable "environment" {
  description = "Extra plain environment variables of the jobs (e.g. AWS_RETRY_MODE, RUST_LOG). Never put secrets here."
  type        = map(string)
  default     = {}

  # EHRLIFT_SHARD in the job definition would give every child of an array job the same
  # shard (it takes precedence over AWS_BATCH_JOB_ARRAY_INDEX): the shard comes from Batch.
  validation {
    condition     = !contains(keys(var.environment), "EHRLIFT_SHARD") && !contains(keys(var.environment), "EHRLIFT_SHARDS")
    error_message = "environment must not set EHRLIFT_SHARD or EHRLIFT_SHARDS: array children take their shard from AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ARRAY_SIZE."
  }
}

variable "secret_environment" {
  description = "Environment variables filled from Secrets Manager or SSM Parameter Store ARNs at start (e.g. EHRLIFT_SOURCE_URL for a database source). The execution role may read exactly these."
  type        = map(string)
  default     = {}
}

variable "eks_oidc_provider_arn" {
  description = "ARN of an EKS cluster's IAM OIDC provider: when set, the job role also trusts the Kubernetes service account below (IRSA). \"\" for AWS Batch only."
  type        = string
  default     = ""
}

variable "eks_oidc_issuer" {
  description = "The cluster's OIDC issuer without https:// (e.g. oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE); required with eks_oidc_provider_arn."
  type        = string
  default     = ""
}

variable "eks_namespace" {
  description = "Namespace of the ehrlift service account (IRSA)."
  type        = string
  default     = "ehrlift"
}

variable "eks_service_account" {
  description = "Name of the ehrlift service account (IRSA)."
  type        = string
  default     = "ehrlift"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
