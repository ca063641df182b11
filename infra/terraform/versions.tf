terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    # Packages the run-record locking function (object_lock.tf) from lambda/.
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ "app" = "ehrlift", "ehrlift:project" = var.project }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # The destination prefix without slashes at either end; "" means the bucket's root.
  prefix = trim(var.prefix, "/")
  # Object keys ehrlift writes all start with this ("" or "PREFIX/").
  key_prefix = local.prefix == "" ? "" : "${local.prefix}/"
  dest_url   = "s3://${var.bucket_name}${local.prefix == "" ? "" : "/${local.prefix}"}"
  # Where ehrlift keeps its run records (commit records and manifests, one folder a run).
  runs_prefix = "${local.key_prefix}_ehrlift/runs/"
}
