# AWS Batch on Fargate: one plain job runs one plan (`ehrlift run`), end to end. A run
# that stops with exit status 3 (throttling, 5xx, a dropped connection, or another
# runner holding _ehrlift/run.lock) is retried and resumes from its last commit record;
# 1 (data over the quarantine threshold), 2 (configuration) and 4 (internal) are not:
# running them again would fail the same way.
#
# Not an array job: `ehrlift run` has no shards yet, and two copies of one plan would
# only wait on each other's lease. See infra/README.md, "Sharded runs".

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

  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }

  container_properties = jsonencode({
    image = var.image
    # ENTRYPOINT is /usr/local/bin/ehrlift. JSON logs on stderr for CloudWatch; the run
    # outcome as JSON on stdout.
    command = [
      "run", var.plan_path,
      "--dest", local.dest_url,
      "--kms-key", aws_kms_alias.bucket.name,
      "--log-format", "json",
      "--json",
    ]
    jobRoleArn       = aws_iam_role.job.arn
    executionRoleArn = aws_iam_role.execution.arn
    resourceRequirements = [
      { type = "VCPU", value = var.job_vcpu },
      { type = "MEMORY", value = tostring(var.job_memory_mib) },
    ]
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
  })
}
