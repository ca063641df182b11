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
  # ehrlift's own state: run state, keys, vault, leases, run records.
  meta_prefix = "${local.key_prefix}_ehrlift/"
  # Where ehrlift keeps its run records, one folder a run: units.json, commit records, shard
  # manifests and the run manifest, each written once (object_lock.tf locks them). The
  # leases that are rewritten and deleted while a run goes on (_ehrlift/run.lock,
  # _ehrlift/leases/<run-id>/...) and _ehrlift/state.json are outside it.
  runs_prefix = "${local.meta_prefix}runs/"
}
