output "destination_url" {
  description = "The --dest of every ehrlift command for this project."
  value       = local.dest_url
}

output "bucket_name" {
  description = "The destination bucket."
  value       = aws_s3_bucket.dest.bucket
}

output "bucket_kms_key_alias" {
  description = "SSE-KMS key of the bucket: ehrlift's --kms-key, or [destination] kms_key."
  value       = aws_kms_alias.bucket.name
}

output "bucket_kms_key_arn" {
  description = "ARN of the SSE-KMS key (the only key the bucket policy accepts on writes)."
  value       = aws_kms_key.bucket.arn
}

output "project_key_alias" {
  description = "KMS key for [keys] provider = \"aws-kms\", key_id = this."
  value       = aws_kms_alias.project.name
}

output "project_key_arn" {
  description = "ARN of the project key's KMS key."
  value       = aws_kms_key.project.arn
}

output "job_role_arn" {
  description = "The job's IAM role (the IRSA annotation of infra/k8s/serviceaccount.yaml)."
  value       = aws_iam_role.job.arn
}

output "job_queue" {
  description = "AWS Batch job queue (aws batch submit-job --job-queue)."
  value       = aws_batch_job_queue.ehrlift.name
}

output "job_definition" {
  description = "AWS Batch job definition of `ehrlift run` (submit it with --array-properties size=N for N shards)."
  value       = aws_batch_job_definition.run.arn
}

output "finalize_job_definition" {
  description = "AWS Batch job definition of `ehrlift finalize` (submit it with --depends-on jobId=ARRAY_JOB_ID)."
  value       = aws_batch_job_definition.finalize.arn
}

output "submit_sharded_run" {
  description = "Shell commands that submit a run of var.shards shards and its finalize job (infra/README.md, step 4a)."
  value       = <<-EOT
    RUN_JOB=$(aws batch submit-job --job-name ${var.name}-${var.project}-run \
      --job-queue ${aws_batch_job_queue.ehrlift.name} \
      --job-definition ${aws_batch_job_definition.run.arn} \
      --array-properties size=${var.shards} \
      --query jobId --output text)
    aws batch submit-job --job-name ${var.name}-${var.project}-finalize \
      --job-queue ${aws_batch_job_queue.ehrlift.name} \
      --job-definition ${aws_batch_job_definition.finalize.arn} \
      --depends-on jobId="$RUN_JOB"
  EOT
}

output "log_group" {
  description = "CloudWatch log group of the job's output."
  value       = aws_cloudwatch_log_group.job.name
}

output "run_records_lock_dead_letters" {
  description = "SQS queue of run records the Object Lock function could not lock: alarm when it is not empty."
  value       = aws_sqs_queue.lock_run_records_dlq.url
}
