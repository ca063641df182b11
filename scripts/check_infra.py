#!/usr/bin/env python3
"""Structural checks of infra/ and the Dockerfile (part of scripts/test.sh).

Parses every infra/terraform/*.tf (python-hcl2), infra/k8s/*.yaml (PyYAML) and the
Dockerfile (dockerfile-parse) and asserts the guarantees infra/README.md promises: TLS-only
and KMS-only bucket policy, SSE-KMS default with a bucket key, multipart uploads aborted by
lifecycle, Batch retries on exit 3 only, the Kubernetes Job's exit-code policy and non-root
pods, a multi-stage non-root image. It does not replace `terraform validate` (which needs the
providers) or a real deployment.

The parsers live in a venv under ~/.cache/ehrlift-infra/venv (EHRLIFT_INFRA_VENV), created
on first use; this script re-runs itself inside it. Without network for that first install
it prints a notice and skips, except under CI=true, where that is a failure (the same
convention as scripts/moto.sh).
"""

import glob
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("EHRLIFT_INFRA_VENV", os.path.expanduser("~/.cache/ehrlift-infra/venv"))
PINS = ["python-hcl2==8.1.4", "PyYAML==6.0.3", "dockerfile-parse==2.0.1"]
STAMP = os.path.join(VENV, "ehrlift-pins.txt")


def unavailable(why):
    if os.environ.get("CI") == "true":
        sys.exit(f"error: infra check unavailable: {why}")
    print(f"notice: infra check unavailable: {why}; skipping it", file=sys.stderr)
    sys.exit(0)


def ensure_venv():
    """Returns the venv's python, creating the venv and installing the pins if needed."""
    py = os.path.join(VENV, "bin", "python")
    wanted = "\n".join(PINS)
    if os.path.exists(py) and os.path.exists(STAMP) and open(STAMP).read() == wanted:
        return py
    if not os.path.exists(py):
        r = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
        if r.returncode != 0:
            unavailable(f"cannot create a virtualenv at {VENV} (python3-venv missing?)")
    r = subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
                       capture_output=True, text=True)
    if r.returncode != 0:
        tail = " ".join(r.stderr.strip().splitlines()[-2:])
        unavailable(f"pip could not install {' '.join(PINS)} into {VENV} ({tail})")
    with open(STAMP, "w") as f:
        f.write(wanted)
    return py


# --- inside the venv ---------------------------------------------------------------

class Failures:
    def __init__(self):
        self.items = []

    def check(self, ok, where, what):
        if not ok:
            self.items.append(f"{where}: {what}")


def norm(v):
    """python-hcl2 keeps string quotes, marks blocks and keeps comments (`__*__` keys); strip them."""
    if isinstance(v, dict):
        return {norm(k): norm(x) for k, x in v.items() if not k.startswith("__")}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


def load_terraform(hcl2):
    """{(kind, type, name): body} for every resource and data block, plus the file of each."""
    blocks, files = {}, {}
    paths = sorted(glob.glob(os.path.join(ROOT, "infra", "terraform", "*.tf")))
    for path in paths:
        with open(path) as f:
            try:
                doc = norm(hcl2.load(f))
            except Exception as e:  # the parser's errors name line and column
                raise SystemExit(f"error: {os.path.relpath(path, ROOT)} does not parse: {e}")
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for typ, named in entry.items():
                    for name, body in named.items():
                        blocks[(kind, typ, name)] = body
                        files[(kind, typ, name)] = os.path.relpath(path, ROOT)
    return paths, blocks, files


def statements(doc):
    return {s.get("sid"): s for s in doc.get("statement", [])}


def conditions(stmt):
    return {(c["test"], c["variable"]): c["values"] for c in stmt.get("condition", [])}


def check_terraform(hcl2, fail):
    paths, tf, files = load_terraform(hcl2)
    fail.check(paths, "infra/terraform", "no *.tf files")

    def get(kind, typ, name):
        body = tf.get((kind, typ, name))
        fail.check(body is not None, "infra/terraform", f"missing {kind} {typ}.{name}")
        return body or {}

    where = "infra/terraform/bucket.tf"
    bucket = get("resource", "aws_s3_bucket", "dest")
    fail.check(bucket.get("object_lock_enabled") is True, where, "the bucket must have object_lock_enabled = true")
    fail.check(("resource", "aws_s3_bucket_object_lock_configuration", "dest") not in tf, where,
               "no default Object Lock retention on the destination bucket (it would lock every part and lease)")

    sse = get("resource", "aws_s3_bucket_server_side_encryption_configuration", "dest")
    rule = (sse.get("rule") or [{}])[0]
    default = (rule.get("apply_server_side_encryption_by_default") or [{}])[0]
    fail.check(default.get("sse_algorithm") == "aws:kms", where, "default encryption must be sse_algorithm = aws:kms")
    fail.check("aws_kms_key.bucket" in str(default.get("kms_master_key_id")), where, "default encryption must use aws_kms_key.bucket")
    fail.check(rule.get("bucket_key_enabled") is True, where, "bucket_key_enabled must be true")

    versioning = get("resource", "aws_s3_bucket_versioning", "dest")
    fail.check((versioning.get("versioning_configuration") or [{}])[0].get("status") == "Enabled", where, "versioning must be Enabled")

    pab = get("resource", "aws_s3_bucket_public_access_block", "dest")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        fail.check(pab.get(flag) is True, where, f"public access block: {flag} must be true")

    lifecycle = get("resource", "aws_s3_bucket_lifecycle_configuration", "dest")
    aborts = [r for r in lifecycle.get("rule", []) if r.get("status") == "Enabled" and r.get("abort_incomplete_multipart_upload")]
    fail.check(aborts, where, "an enabled lifecycle rule must abort incomplete multipart uploads")
    if aborts:
        days = aborts[0]["abort_incomplete_multipart_upload"][0].get("days_after_initiation")
        fail.check(days == "${var.abort_incomplete_multipart_days}", where, "the abort rule's days must come from var.abort_incomplete_multipart_days")

    policy = statements(get("data", "aws_iam_policy_document", "dest"))
    tls = policy.get("DenyInsecureTransport", {})
    fail.check(tls.get("effect") == "Deny" and conditions(tls).get(("Bool", "aws:SecureTransport")) == ["false"]
               and "s3:*" in tls.get("actions", []), where, "the bucket policy must deny every s3:* request without TLS")
    sse_deny = policy.get("DenyNonKmsEncryption", {})
    fail.check(sse_deny.get("effect") == "Deny" and "s3:PutObject" in sse_deny.get("actions", [])
               and conditions(sse_deny).get(("StringNotEqualsIfExists", "s3:x-amz-server-side-encryption")) == ["aws:kms"],
               where, "the bucket policy must deny PutObject asking for encryption other than aws:kms")
    key_deny = policy.get("DenyOtherKmsKeys", {})
    key_cond = conditions(key_deny).get(("StringNotEqualsIfExists", "s3:x-amz-server-side-encryption-aws-kms-key-id"), [])
    fail.check(key_deny.get("effect") == "Deny" and "s3:PutObject" in key_deny.get("actions", [])
               and any("aws_kms_key.bucket.arn" in v for v in key_cond),
               where, "the bucket policy must deny PutObject with a KMS key other than aws_kms_key.bucket")
    for sid, s in policy.items():
        for (test, var), _ in conditions(s).items():
            fail.check(not (test == "Null" and var == "s3:x-amz-server-side-encryption"), where,
                       f"{sid}: a Null deny on s3:x-amz-server-side-encryption refuses UploadPart (multipart uploads)")

    where = "infra/terraform/kms.tf"
    for name in ("bucket", "project"):
        key = get("resource", "aws_kms_key", name)
        fail.check(key.get("enable_key_rotation") is True, where, f"aws_kms_key.{name} must rotate")
        get("resource", "aws_kms_alias", name)

    where = "infra/terraform/iam.tf"
    job = get("data", "aws_iam_policy_document", "job")
    text = str(job)
    fail.check("s3:*" not in text and "kms:*" not in text, where, "the job role must not have s3:* or kms:*")
    fail.check("s3:BypassGovernanceRetention" not in text and "ObjectVersion" not in text, where,
               "the job role must not be able to remove object versions or bypass retention")

    where = "infra/terraform/batch.tf"
    jd = get("resource", "aws_batch_job_definition", "run")
    rs = (jd.get("retry_strategy") or [{}])[0]
    rules = [(e.get("action"), e.get("on_exit_code")) for e in rs.get("evaluate_on_exit", [])]
    fail.check(rules == [("RETRY", "3"), ("EXIT", "*")], where,
               f"retry_strategy must be RETRY on exit code 3, then EXIT on *; found {rules}")
    fail.check(jd.get("timeout"), where, "the job definition needs a timeout")
    props = str(jd.get("container_properties", ""))
    for flag in ('"run"', '"--dest"', '"--kms-key"', '"--log-format"', '"json"', "awslogs"):
        fail.check(flag in props, where, f"container_properties must contain {flag}")
    for gone in ("--shard", "finalize", "array_properties", "AWS_BATCH_JOB_ARRAY_INDEX"):
        fail.check(gone not in props and gone not in str(jd), where, f"{gone}: sharding does not exist yet")
    get("resource", "aws_cloudwatch_log_group", "job")
    return len(paths)


def check_k8s(yaml, fail):
    docs = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "infra", "k8s", "*.yaml"))):
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            try:
                for d in yaml.safe_load_all(f):
                    if d:
                        docs[(d.get("apiVersion"), d.get("kind"))] = (rel, d)
            except yaml.YAMLError as e:
                raise SystemExit(f"error: {rel} does not parse: {e}")

    fail.check(("v1", "ServiceAccount") in docs, "infra/k8s", "no v1 ServiceAccount")
    if ("v1", "ServiceAccount") in docs:
        rel, sa = docs[("v1", "ServiceAccount")]
        fail.check("eks.amazonaws.com/role-arn" in (sa["metadata"].get("annotations") or {}), rel, "the service account needs the IRSA annotation")

    fail.check(("batch/v1", "Job") in docs, "infra/k8s", "no batch/v1 Job")
    if ("batch/v1", "Job") not in docs:
        return len(docs)
    rel, job = docs[("batch/v1", "Job")]
    spec = job["spec"]
    fail.check(spec.get("completionMode") == "Indexed", rel, "completionMode must be Indexed")
    fail.check(spec.get("completions") == 1 and spec.get("parallelism") == 1, rel,
               "completions and parallelism must be 1 until ehrlift has shards")
    rules = (spec.get("podFailurePolicy") or {}).get("rules", [])
    fail_codes = sorted(v for r in rules if r.get("action") == "FailJob" and r.get("onExitCodes", {}).get("operator") == "In"
                        for v in r["onExitCodes"].get("values", []))
    fail.check(fail_codes == [1, 2, 4], rel, f"podFailurePolicy must FailJob on exit codes 1, 2, 4; found {fail_codes}")
    fail.check(not any(3 in r.get("onExitCodes", {}).get("values", []) for r in rules), rel, "exit code 3 must be retried, not matched")
    fail.check(spec.get("backoffLimitPerIndex", spec.get("backoffLimit", 0)) >= 1, rel, "exit code 3 needs a retry budget")
    pod = spec["template"]["spec"]
    fail.check(pod.get("restartPolicy") == "Never", rel, "podFailurePolicy requires restartPolicy: Never")
    fail.check(pod.get("securityContext", {}).get("runAsNonRoot") is True, rel, "the pod must set runAsNonRoot: true")
    fail.check(pod.get("securityContext", {}).get("runAsUser", 0) != 0, rel, "runAsUser must not be 0")
    containers = pod.get("containers", [])
    fail.check(len(containers) == 1 and containers[0].get("name") == "ehrlift", rel, "one container named ehrlift (podFailurePolicy names it)")
    for c in containers:
        sc = c.get("securityContext", {})
        fail.check(sc.get("readOnlyRootFilesystem") is True, rel, "readOnlyRootFilesystem must be true")
        fail.check(sc.get("allowPrivilegeEscalation") is False, rel, "allowPrivilegeEscalation must be false")
        fail.check(any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts", [])), rel, "/tmp needs a writable volume")
        fail.check(c.get("resources", {}).get("requests"), rel, "the container needs resource requests")
        args = c.get("args", [])
        fail.check(args[:1] == ["run"] and "--dest" in args and "--kms-key" in args, rel, "args must be `run PLAN --dest ... --kms-key ...`")
        fail.check(not any(a.startswith("--shard") for a in args), rel, "--shard does not exist yet")
    return len(docs)


def check_dockerfile(DockerfileParser, fail):
    rel = "Dockerfile"
    parser = DockerfileParser(path=os.path.join(ROOT, rel))
    instrs = parser.structure
    froms = [i["value"] for i in instrs if i["instruction"] == "FROM"]
    fail.check(len(froms) >= 2, rel, "the build must be multi-stage (a builder and a runtime FROM)")
    fail.check(all(":" in f.split()[0] and not f.split()[0].endswith(":latest") for f in froms), rel, "every FROM must be pinned by tag")
    last = max(i for i, x in enumerate(instrs) if x["instruction"] == "FROM")
    runtime = instrs[last:]
    users = [i["value"].strip() for i in runtime if i["instruction"] == "USER"]
    fail.check(users and users[-1].split(":")[0] not in ("root", "0"), rel, "the runtime stage must end with a non-root USER")
    entry = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"]
    fail.check(entry and "/usr/local/bin/ehrlift" in entry[-1], rel, "ENTRYPOINT must be /usr/local/bin/ehrlift")
    text = parser.content
    fail.check("cargo build --release --locked -p ehrlift-cli" in text, rel, "the builder must run cargo build --release --locked -p ehrlift-cli")
    for bad in ("COPY out", "COPY . "):
        fail.check(bad not in text, rel, f"`{bad}` would copy run output or the whole tree into the image")
    ignore = open(os.path.join(ROOT, ".dockerignore")).read().split()
    for must in ("target/", "out/", ".git", "**/fuzz/corpus", "**/fuzz/artifacts"):
        fail.check(must in ignore, ".dockerignore", f"must exclude {must}")


def main_in_venv():
    start = time.monotonic()
    import hcl2
    import yaml
    from dockerfile_parse import DockerfileParser

    fail = Failures()
    n_tf = check_terraform(hcl2, fail)
    n_k8s = check_k8s(yaml, fail)
    check_dockerfile(DockerfileParser, fail)
    fail.items = [f for f in fail.items if not f.endswith(": ")]
    if fail.items:
        print(f"infra check: {len(fail.items)} problem(s):", file=sys.stderr)
        for item in fail.items:
            print(f"  {item}", file=sys.stderr)
        sys.exit(1)
    print(f"infra check: ok ({n_tf} terraform files, {n_k8s} kubernetes objects, Dockerfile) in {time.monotonic() - start:.2f}s",
          file=sys.stderr)


if __name__ == "__main__":
    if os.environ.get("EHRLIFT_INFRA_IN_VENV") == "1":
        main_in_venv()
    else:
        py = ensure_venv()
        env = dict(os.environ, EHRLIFT_INFRA_IN_VENV="1")
        sys.exit(subprocess.run([py, os.path.abspath(__file__)], env=env).returncode)
