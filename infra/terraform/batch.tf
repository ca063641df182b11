# AWS Batch on Fargate: two job definitions of one image and one log group.
#
# - `run` is `ehrlift run PLAN`. Submitted as an array job (`aws batch submit-job
#   --array-properties size=N`, N from 2 to 10,000: a job definition cannot fix the size),
#   each child is one shard: Batch sets AWS_BATCH_JOB_ARRAY_INDEX and
#   AWS_BATCH_JOB_ARRAY_SIZE in every child and ehrlift takes its shard I/N from them, so
#   the command has no --shard (and no --fresh, which sharding refuses). Submitted without
#   array properties it is one unsharded run of the whole plan.
# - `finalize` is `ehrlift finalize PLAN`, submitted with `--depends-on jobId=<array job
#   id>`: a dependency on the array parent waits for every child, and fails without running
#   if a child failed. The last shard to finish normally writes the run manifest itself;
#   finalize writes it when that did not happen, and exits 0 when it already exists.
#
# Both retry exit status 3 only (throttling, 5xx, a dropped connection, a shard's lease
# still held by a predecessor that was killed; for finalize also "a shard has not finished
# yet"). 1 (data over the quarantine threshold), 2 (configuration) and 4 (internal) are
# final: running them again would fail the same way. In an array job the retry strategy
# and the timeout apply to each child on its own; a retried child resumes its shard from
# its committed parts, and a child whose shard had already finished exits 0 at once.

resource "aws_cloudwatch_log_group" "job" {
  name              = "/aws/batch/${var.name}-${var.project}"
  retention_in_days = var.log_retention_days
}

resource "aws_batch_compute_environment" "fargate" {
  compute_environment_name_prefix = "${var.name}-${var.project}-"
  type                            = "MANAGED"

  compute_resources {
    type               = "FARGATE"
    max_vcpus          = var.max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = var.security_group_ids
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "ehrlift" {
  name     = "${var.name}-${var.project}"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.fargate.arn
  }
}

locals {
  # What both job definitions run with. The plan is loaded in full by `finalize` too, and an
  # unset ${VAR} in it is a configuration error, so finalize gets the same environment
  # (and start-up secrets) as the shards.
  job_container = {
    image                        = var.image
    executionRoleArn             = aws_iam_role.execution.arn
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    networkConfiguration         = { assignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED" }
    # The root filesystem stays writable here: Fargate on Batch has no emptyDir-style
    # scratch volume to give /tmp, and ehrlift may spill temporary files there.
    readonlyRootFilesystem = false
    environment = [
      for k, v in merge({
        AWS_REGION = var.region
        # The SDK's adaptive mode backs off under S3/KMS throttling (docs/cloud.md).
        AWS_RETRY_MODE = "adaptive"
        # The plans' [keys] key_id may read it: key_id = "${EHRLIFT_KMS_PROJECT_KEY}".
        EHRLIFT_KMS_PROJECT_KEY = aws_kms_alias.project.name
      }, var.environment) : { name = k, value = v }
    ]
    secrets = [for k, arn in var.secret_environment : { name = k, valueFrom = arn }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.job.name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = "ehrlift"
      }
    }
  }

  # finalize reads records and writes one manifest: a small task.
  finalize_vcpu       = "0.5"
  finalize_memory_mib = 1024
  finalize_timeout    = 3600
}

resource "aws_batch_job_definition" "run" {
  name                  = "${var.name}-${var.project}-run"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  # Retry on exit status 3 only. Batch evaluates these in order; the catch-all EXIT
  # makes 1, 2, 4 (and anything else, e.g. an OOM kill) final.
  retry_strategy {
    attempts = var.job_attempts
    evaluate_on_exit {
      action       = "RETRY"
      on_exit_code = "3"
    }
    evaluate_on_exit {
      action       = "EXIT"
      on_exit_code = "*"
    }
  }

  # Per attempt, and in an array job per child.
  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }

  container_properties = jsonencode(merge(local.job_container, {
    # ENTRYPOINT is /usr/local/bin/ehrlift. JSON logs on stderr for CloudWatch (each line
    # names run_id, shard and table); the shard's outcome as JSON on stdout.
    command = [
      "run", var.plan_path,
      "--dest", local.dest_url,
      "--kms-key", aws_kms_alias.bucket.name,
      "--log-format", "json",
      "--json",
    ]
    jobRoleArn = aws_iam_role.job.arn
    resourceRequirements = [
      { type = "VCPU", value = var.job_vcpu },
      { type = "MEMORY", value = tostring(var.job_memory_mib) },
    ]
  }))
}

resource "aws_batch_job_definition" "finalize" {
  name                  = "${var.name}-${var.project}-finalize"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true

  # Exit 3 here is also "a shard has not finished yet": worth retrying, the rest is not.
  retry_strategy {
    attempts = var.job_attempts
    evaluate_on_exit {
      action       = "RETRY"
      on_exit_code = "3"
    }
    evaluate_on_exit {
      action       = "EXIT"
      on_exit_code = "*"
    }
  }

  timeout {
    attempt_duration_seconds = local.finalize_timeout
  }

  container_properties = jsonencode(merge(local.job_container, {
    # The same plan, destination and key as the shards' command: finalize must find the
    # run they wrote.
    command = [
      "finalize", var.plan_path,
      "--dest", local.dest_url,
      "--kms-key", aws_kms_alias.bucket.name,
      "--log-format", "json",
    ]
    jobRoleArn = aws_iam_role.finalize.arn
    resourceRequirements = [
      { type = "VCPU", value = local.finalize_vcpu },
      { type = "MEMORY", value = tostring(local.finalize_memory_mib) },
    ]
  }))
}
