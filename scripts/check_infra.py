#!/usr/bin/env python3
"""Structural checks of infra/ and the Dockerfile (part of scripts/test.sh).

Parses every infra/terraform/*.tf (python-hcl2), infra/k8s/*.yaml (PyYAML) and the
Dockerfile (dockerfile-parse) and asserts the guarantees infra/README.md promises: TLS-only
and KMS-only bucket policy, SSE-KMS default with a bucket key, multipart uploads aborted by
lifecycle, run records locked and leases not, least-privilege roles, sharded runs wired the
way `ehrlift run` reads its shard (Batch array jobs, a Kubernetes Indexed Job whose
EHRLIFT_SHARDS equals its completions), retries on exit 3 only, a finalize job on the same
plan and destination, non-root pods, a multi-stage non-root image. It does not replace
`terraform validate` (which needs the providers) or a real deployment.

Then it proves its own checks bite: a self-test feeds the same checks copies of infra/ with
one thing broken each (EHRLIFT_SHARDS not equal to completions, exit 3 not retried, a
--shard in the args, ...) and fails if any copy passes. The copies live in memory only.

The parsers live in a venv under ~/.cache/ehrlift-infra/venv (EHRLIFT_INFRA_VENV), created
on first use; this script re-runs itself inside it. Without network for that first install
it prints a notice and skips, except under CI=true, where that is a failure (the same
convention as scripts/moto.sh).
"""

import glob
import os
import re
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


class Tree:
    """The repository's files, read from ROOT, with some replaced (the self-test's copies)."""

    def __init__(self, overrides=None):
        self.overrides = overrides or {}

    def glob(self, pattern):
        return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))

    def read(self, rel):
        if rel in self.overrides:
            return self.overrides[rel]
        with open(os.path.join(ROOT, rel)) as f:
            return f.read()


# Parsing HCL is the slow part; the self-test's copies differ from the tree in one file.
_PARSED = {}


def parsed(kind, text, parse):
    key = (kind, text)
    if key not in _PARSED:
        _PARSED[key] = parse(text)
    return _PARSED[key]


def norm(v):
    """python-hcl2 keeps string quotes, marks blocks and keeps comments (`__*__` keys); strip them."""
    if isinstance(v, dict):
        return {norm(k): norm(x) for k, x in v.items() if not k.startswith("__")}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


class Terraform:
    """Every resource, data, variable, local and output block of infra/terraform/*.tf."""

    def __init__(self, hcl2, tree):
        self.blocks, self.files, self.locals, self.variables, self.outputs = {}, {}, {}, {}, {}
        self.texts = {}
        self.paths = tree.glob(os.path.join("infra", "terraform", "*.tf"))
        for rel in self.paths:
            text = tree.read(rel)
            try:
                doc = norm(parsed("hcl", text, hcl2.loads))
            except Exception as e:  # the parser's errors name line and column
                raise SystemExit(f"error: {rel} does not parse: {e}")
            self.texts[rel] = str(doc)
            for kind in ("resource", "data"):
                for entry in doc.get(kind, []):
                    for typ, named in entry.items():
                        for name, body in named.items():
                            self.blocks[(kind, typ, name)] = body
                            self.files[(kind, typ, name)] = rel
            for entry in doc.get("locals", []):
                self.locals.update(entry)
            for entry in doc.get("variable", []):
                self.variables.update(entry)
            for entry in doc.get("output", []):
                self.outputs.update(entry)

    def expand(self, text, keep=(), depth=4):
        """`text` with every local.NAME but those in `keep` replaced by its value: `${local.X}`
        inside a string by the value's text, a bare local.X by its repr."""
        def value(m):
            name = m.group(2) or m.group(3)
            if name in keep or name not in self.locals:
                return m.group(0)
            v = self.locals[name]
            if m.group(2) and isinstance(v, str):
                return v[2:-1] if v.startswith("${") and v.endswith("}") and v.count("${") == 1 else v
            return str(v)
        for _ in range(depth):
            new = re.sub(r"(\$\{local\.([a-z_][a-z0-9_]*)\})|\blocal\.([a-z_][a-z0-9_]*)", value, text)
            if new == text:
                break
            text = new
        return text


def statements(doc):
    return {s.get("sid"): s for s in doc.get("statement", [])}


def conditions(stmt):
    return {(c["test"], c["variable"]): c["values"] for c in stmt.get("condition", [])}


def hcl_list(text):
    """Splits the inside of an HCL list expression at its top-level commas; strips quotes."""
    items, depth, quoted, cur = [], 0, False, ""
    for ch in text:
        if ch == '"' and not cur.endswith("\\"):
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
        elif not quoted and ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur.strip())
    return [i[1:-1] if len(i) >= 2 and i[0] == '"' and i[-1] == '"' else i for i in items]


def batch_command(jd):
    """The `command` list of a job definition's container_properties, as tokens."""
    m = re.search(r"\bcommand\s*=\s*\[(.*?)\]", str(jd.get("container_properties", "")), re.S)
    return hcl_list(m.group(1)) if m else None


def flag_value(args, flag):
    """The argument after `flag` (or of `flag=VALUE`), None when absent."""
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_terraform(hcl2, tree, fail):
    tf = Terraform(hcl2, tree)
    fail.check(tf.paths, "infra/terraform", "no *.tf files")

    def get(kind, typ, name):
        body = tf.blocks.get((kind, typ, name))
        fail.check(body is not None, "infra/terraform", f"missing {kind} {typ}.{name}")
        return body or {}

    # Every reference names something declared: no `terraform validate` here (it needs the
    # providers from the registry), but a misspelt local or resource is caught.
    declared = {("var", n) for n in tf.variables} | {("local", n) for n in tf.locals}
    declared |= {(k, f"{t}.{n}") for (k, t, n) in tf.blocks}
    for rel, text in tf.texts.items():
        refs = {("var", m) for m in re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", text)}
        refs |= {("local", m) for m in re.findall(r"\blocal\.([a-z_][a-z0-9_]*)", text)}
        refs |= {("data", f"{t}.{n}") for t, n in re.findall(r"\bdata\.([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)", text)}
        refs |= {("resource", f"{t}.{n}") for t, n in re.findall(r"(?<![\w.])(aws_[a-z0-9_]+)\.([a-z_][a-z0-9_]*)", text)}
        for kind, name in sorted(refs - declared):
            fail.check(False, rel, f"refers to {'' if kind == 'resource' else kind + '.'}{name}, which no file declares")

    where = "infra/terraform/bucket.tf"
    bucket = get("resource", "aws_s3_bucket", "dest")
    fail.check(bucket.get("object_lock_enabled") is True, where, "the bucket must have object_lock_enabled = true")
    fail.check(("resource", "aws_s3_bucket_object_lock_configuration", "dest") not in tf.blocks, where,
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

    # Run records are locked; leases and the run state, rewritten and deleted while a run
    # goes on, must stay outside what the lock function sees.
    where = "infra/terraform/versions.tf"
    runs_prefix = tf.expand("${local.runs_prefix}", keep=("key_prefix",))
    fail.check(runs_prefix == "${local.key_prefix}_ehrlift/runs/", where,
               f"local.runs_prefix must be ${{local.key_prefix}}_ehrlift/runs/ (the leases under _ehrlift/leases/ must not be locked); it is {runs_prefix}")
    where = "infra/terraform/object_lock.tf"
    notification = get("resource", "aws_s3_bucket_notification", "dest")
    lambdas = notification.get("lambda_function", [])
    fail.check(len(lambdas) == 1 and lambdas[0].get("filter_prefix") == "${local.runs_prefix}", where,
               "the bucket notification must invoke the lock function for local.runs_prefix only (not for leases or data)")
    fail.check(all(e.startswith("s3:ObjectCreated:") for l in lambdas for e in l.get("events", [])), where,
               "the lock function must be invoked on ObjectCreated events only")
    locker = statements(get("data", "aws_iam_policy_document", "lock_run_records")).get("LockRunRecords", {})
    fail.check(locker.get("resources") == ["${aws_s3_bucket.dest.arn}/${local.runs_prefix}*"], where,
               "the lock function may put retention under local.runs_prefix only")

    where = "infra/terraform/kms.tf"
    for name in ("bucket", "project"):
        key = get("resource", "aws_kms_key", name)
        fail.check(key.get("enable_key_rotation") is True, where, f"aws_kms_key.{name} must rotate")
        get("resource", "aws_kms_alias", name)
    fail.check("aws_iam_role.finalize" not in str(get("data", "aws_iam_policy_document", "project_key")), where,
               "the project key's policy must not name the finalize role (finalize never unwraps keys)")

    where = "infra/terraform/iam.tf"
    job = get("data", "aws_iam_policy_document", "job")
    text = str(job)
    fail.check("s3:*" not in text and "kms:*" not in text, where, "the job role must not have s3:* or kms:*")
    fail.check("s3:BypassGovernanceRetention" not in text and "ObjectVersion" not in text, where,
               "the job role must not be able to remove object versions or bypass retention")
    objects = statements(job).get("ObjectsUnderThePrefix", {})
    fail.check({"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= set(objects.get("actions", []))
               and objects.get("resources") == ["${local.bucket_arn}/${local.key_prefix}*"], where,
               "the job role needs GetObject, PutObject and DeleteObject under the prefix (shard leases are conditional puts and deletes)")

    fin = get("data", "aws_iam_policy_document", "finalize")
    text = tf.expand(str(fin))
    fail.check("s3:*" not in text and "kms:*" not in text and "DeleteObject" not in text and "ObjectVersion" not in text
               and "BypassGovernanceRetention" not in text, where,
               "the finalize role may list, get and put run records only (no s3:*, kms:*, DeleteObject or version actions)")
    fail.check("aws_kms_key.project" not in text, where, "the finalize role must not use the project key")
    allowed = {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:GetEncryptionConfiguration"}
    for s in fin.get("statement", []):
        acts = set(s.get("actions", []))
        fail.check(acts <= allowed, where, f"finalize statement {s.get('sid')}: {sorted(acts - allowed)} not needed to finalize")
        for r in s.get("resources", []):
            fail.check(r == "${local.bucket_arn}" or r.startswith("${local.bucket_arn}/${local.meta_prefix}"), where,
                       f"finalize statement {s.get('sid')}: {r} is outside PREFIX/_ehrlift/")
        if "s3:ListBucket" in acts:
            prefixes = [v for (test, var), vs in conditions(s).items() if var == "s3:prefix" and not test.endswith("IfExists") for v in vs]
            fail.check(prefixes and all(v.startswith("${local.meta_prefix}") for v in prefixes), where,
                       "the finalize role's ListBucket must be limited (StringLike s3:prefix) to PREFIX/_ehrlift/")
    kms_dyn = [d for d in fin.get("dynamic", []) if "statement" in d]
    fail.check(kms_dyn and "s.finalize" in str(kms_dyn), where, "the finalize role's KMS grants must be the kms_bucket_statements marked finalize")
    for st in tf.locals.get("kms_bucket_statements", []):
        if st.get("finalize") is True and set(st.get("actions", [])) - {"kms:DescribeKey"}:
            fail.check(any(c.get("variable") == "kms:ViaService" for c in st.get("conditions", [])), where,
                       f"kms_bucket_statements {st.get('sid')}: finalize may use the bucket key only through S3 (kms:ViaService)")
    fin_trust = str(get("data", "aws_iam_policy_document", "finalize_trust"))
    fail.check("ecs-tasks.amazonaws.com" in fin_trust and "Federated" not in fin_trust, where,
               "the finalize role is assumed by Batch (ECS) tasks only")

    # Batch: `run` for array jobs (the shard from AWS_BATCH_JOB_ARRAY_INDEX/SIZE), `finalize`
    # after it, both retrying exit 3 only.
    where = "infra/terraform/batch.tf"
    commands = {}
    for name, verb in (("run", "run"), ("finalize", "finalize")):
        jd = get("resource", "aws_batch_job_definition", name)
        what = f"aws_batch_job_definition.{name}"
        rs = (jd.get("retry_strategy") or [{}])[0]
        rules = [(e.get("action"), e.get("on_exit_code")) for e in rs.get("evaluate_on_exit", [])]
        fail.check(rules == [("RETRY", "3"), ("EXIT", "*")], where,
                   f"{what}: retry_strategy must be RETRY on exit code 3, then EXIT on *; found {rules}")
        fail.check(rs.get("attempts"), where, f"{what}: retry_strategy needs attempts")
        fail.check(jd.get("timeout"), where, f"{what}: needs a timeout")
        fail.check(jd.get("type") == "container" and jd.get("platform_capabilities") == ["FARGATE"], where,
                   f"{what}: must be a FARGATE container job definition")
        props = tf.expand(str(jd.get("container_properties", "")))
        fail.check("awslogs" in props, where, f"{what}: container_properties must log with awslogs")
        fail.check("EHRLIFT_SHARD" not in props, where,
                   f"{what}: must not set EHRLIFT_SHARD(S): it overrides AWS_BATCH_JOB_ARRAY_INDEX, giving every child one shard")
        args = batch_command(jd)
        fail.check(args, where, f"{what}: container_properties has no command list")
        args = args or []
        commands[name] = args
        fail.check(args[:1] == [verb], where, f"{what}: command must be `{verb} PLAN ...`; found {args[:2]}")
        fail.check(flag_value(args, "--log-format") == "json", where, f"{what}: command needs --log-format json (CloudWatch)")
        fail.check(flag_value(args, "--dest") and flag_value(args, "--kms-key"), where, f"{what}: command needs --dest and --kms-key")
        fail.check(not any(a.startswith("--shard") for a in args), where,
                   f"{what}: no --shard in the command (array children take it from AWS_BATCH_JOB_ARRAY_INDEX/SIZE)")
        fail.check("--fresh" not in args, where, f"{what}: no --fresh (a sharded run refuses it; start over at a new prefix)")
    run, fin_cmd = commands["run"], commands["finalize"]
    fail.check(fin_cmd[1:2] == run[1:2] and all(flag_value(fin_cmd, f) == flag_value(run, f) for f in ("--dest", "--kms-key")), where,
               "aws_batch_job_definition.finalize must name the same plan, --dest and --kms-key as .run")
    fail.check("aws_iam_role.job.arn" in str(get("resource", "aws_batch_job_definition", "run").get("container_properties")), where,
               "aws_batch_job_definition.run must run as aws_iam_role.job")
    fail.check("aws_iam_role.finalize.arn" in str(get("resource", "aws_batch_job_definition", "finalize").get("container_properties")), where,
               "aws_batch_job_definition.finalize must run as aws_iam_role.finalize (least privilege)")
    get("resource", "aws_cloudwatch_log_group", "job")

    where = "infra/terraform/outputs.tf"
    submit = str(tf.outputs.get("submit_sharded_run", {}).get("value", ""))
    fail.check("--array-properties size=${var.shards}" in submit and "aws_batch_job_definition.run.arn" in submit
               and "--depends-on jobId=" in submit and "aws_batch_job_definition.finalize.arn" in submit, where,
               "output submit_sharded_run must submit .run with --array-properties size=${var.shards}, then .finalize with --depends-on jobId=")

    where = "infra/terraform/variables.tf"
    env_var = tf.variables.get("environment", {})
    fail.check("EHRLIFT_SHARD" in str(env_var.get("validation")), where,
               "variable environment must refuse EHRLIFT_SHARD (array children take their shard from Batch)")
    return len(tf.paths)


# batch/v1 JobSpec and PodFailurePolicyRule fields (Kubernetes 1.33): a misspelt field is
# dropped by the API server with a warning at best, so a typo in backoffLimitPerIndex would
# quietly turn per-shard retries off.
JOB_SPEC_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "backoffLimitPerIndex", "completionMode", "completions",
                   "managedBy", "manualSelector", "maxFailedIndexes", "parallelism", "podFailurePolicy",
                   "podReplacementPolicy", "selector", "successPolicy", "suspend", "template", "ttlSecondsAfterFinished"}
RULE_FIELDS = {"action", "onExitCodes", "onPodConditions"}
RULE_ACTIONS = {"FailJob", "FailIndex", "Ignore", "Count"}


def check_pod(rel, spec, fail):
    """What the shards' and the finalize Job's pods share: the Job spec's fields, the
    exit-code policy, non-root, /tmp."""
    unknown = sorted(set(spec) - JOB_SPEC_FIELDS)
    fail.check(not unknown, rel, f"unknown Job spec field(s) {unknown}")
    rules = (spec.get("podFailurePolicy") or {}).get("rules", [])
    for r in rules:
        fail.check(set(r) <= RULE_FIELDS and r.get("action") in RULE_ACTIONS, rel,
                   f"podFailurePolicy rule {r}: fields are {sorted(RULE_FIELDS)}, action one of {sorted(RULE_ACTIONS)}")
        codes = r.get("onExitCodes") or {}
        fail.check(not codes or (codes.get("operator") in ("In", "NotIn") and all(isinstance(v, int) for v in codes.get("values", []))),
                   rel, f"podFailurePolicy onExitCodes {codes}: operator In or NotIn, integer values")
        fail.check(r.get("action") != "FailIndex" or "backoffLimitPerIndex" in spec, rel,
                   "action FailIndex needs backoffLimitPerIndex (the API server refuses it otherwise)")
    fail_codes = sorted(v for r in rules if r.get("action") in ("FailIndex", "FailJob")
                        and (r.get("onExitCodes") or {}).get("operator") == "In" for v in r["onExitCodes"].get("values", []))
    fail.check(fail_codes == [1, 2, 4], rel, f"podFailurePolicy must fail (FailIndex or FailJob) on exit codes 1, 2, 4; found {fail_codes}")
    for r in rules:
        codes = r.get("onExitCodes") or {}
        if not codes:
            continue
        matches_3 = (3 in codes.get("values", [])) == (codes.get("operator") == "In")
        fail.check(not matches_3, rel, f"exit code 3 must be retried, not matched by a podFailurePolicy rule ({r.get('action')})")
        fail.check(codes.get("containerName") == "ehrlift", rel, "podFailurePolicy onExitCodes must name containerName: ehrlift")
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
        args = [str(a) for a in c.get("args", [])]
        fail.check(not any(a.startswith("--shard") for a in args), rel,
                   "no --shard in the args (the shard comes from JOB_COMPLETION_INDEX and EHRLIFT_SHARDS)")
        fail.check("--fresh" not in args, rel, "no --fresh in the args (a sharded run refuses it; start over at a new prefix)")
        fail.check(flag_value(args, "--log-format") == "json", rel, "args need --log-format json")
        fail.check(flag_value(args, "--dest") and flag_value(args, "--kms-key"), rel, "args need --dest and --kms-key")
        env = {e.get("name"): e for e in c.get("env", [])}
        fail.check("EHRLIFT_SHARD" not in env, rel, "env must not set EHRLIFT_SHARD: it overrides JOB_COMPLETION_INDEX, giving every pod one shard")
    return containers[0] if containers else {}


def check_k8s(yaml, tree, fail):
    docs = []
    for rel in tree.glob(os.path.join("infra", "k8s", "*.yaml")):
        try:
            docs += [(rel, d) for d in parsed("yaml", tree.read(rel), lambda t: list(yaml.safe_load_all(t))) if d]
        except yaml.YAMLError as e:
            raise SystemExit(f"error: {rel} does not parse: {e}")

    sas = [(rel, d) for rel, d in docs if (d.get("apiVersion"), d.get("kind")) == ("v1", "ServiceAccount")]
    fail.check(len(sas) == 1, "infra/k8s", f"one v1 ServiceAccount (IRSA); found {len(sas)}")
    sa_name = sa_ns = None
    if sas:
        rel, sa = sas[0]
        sa_name, sa_ns = sa["metadata"].get("name"), sa["metadata"].get("namespace")
        fail.check("eks.amazonaws.com/role-arn" in (sa["metadata"].get("annotations") or {}), rel, "the service account needs the IRSA annotation")

    def verb(d):
        cs = d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        return str((cs[0].get("args") or [None])[0]) if cs else None

    # job.yaml holds the shards' Indexed Job, finalize-job.yaml the finalize Job.
    jobs = [(rel, d) for rel, d in docs if (d.get("apiVersion"), d.get("kind")) == ("batch/v1", "Job")]
    found = {}
    for rel, d in jobs:
        name = os.path.basename(rel)
        want = {"job.yaml": "run", "finalize-job.yaml": "finalize"}.get(name)
        fail.check(want, rel, "a Job outside job.yaml and finalize-job.yaml: nothing checks it")
        fail.check(name not in found, rel, "more than one Job in this file")
        if want:
            fail.check(verb(d) == want, rel, f"the Job must run `ehrlift {want} PLAN ...`; its args start with {verb(d)!r}")
            found.setdefault(name, (rel, d))
    for name in ("job.yaml", "finalize-job.yaml"):
        fail.check(name in found, f"infra/k8s/{name}", "no batch/v1 Job here")
    runs = [found["job.yaml"]] if "job.yaml" in found else []
    finals = [found["finalize-job.yaml"]] if "finalize-job.yaml" in found else []

    run_c = {}
    if runs:
        rel, job = runs[0]
        spec = job["spec"]
        fail.check(spec.get("completionMode") == "Indexed", rel, "completionMode must be Indexed (one index a shard)")
        completions, parallelism = spec.get("completions"), spec.get("parallelism")
        fail.check(isinstance(completions, int) and completions >= 1, rel, f"completions must be the shard count (>= 1); found {completions!r}")
        fail.check(isinstance(parallelism, int) and 1 <= parallelism <= (completions or 0), rel,
                   f"parallelism must be from 1 to completions ({completions}); found {parallelism!r}")
        limit = spec.get("backoffLimitPerIndex")
        fail.check(isinstance(limit, int) and limit >= 1, rel, "backoffLimitPerIndex must be set (>= 1): exit code 3 needs a retry budget per shard")
        run_c = check_pod(rel, spec, fail)
        env = {e.get("name"): e for e in run_c.get("env", [])}
        shards = env.get("EHRLIFT_SHARDS", {})
        fail.check(shards.get("value") == str(completions), rel,
                   f"env EHRLIFT_SHARDS must be the string \"{completions}\", equal to spec.completions; found {shards.get('value')!r}")
        pod = spec["template"]["spec"]
        fail.check(sa_name and pod.get("serviceAccountName") == sa_name and job["metadata"].get("namespace") == sa_ns, rel,
                   f"the pods must run as the IRSA service account {sa_ns}/{sa_name}")
    if finals:
        rel, job = finals[0]
        spec = job["spec"]
        fail.check(spec.get("completionMode", "NonIndexed") == "NonIndexed" and spec.get("completions", 1) == 1, rel,
                   "finalize is one pod (no Indexed completions)")
        fail.check(isinstance(spec.get("backoffLimit"), int) and spec["backoffLimit"] >= 1, rel, "backoffLimit must be >= 1: exit code 3 is retried")
        c = check_pod(rel, spec, fail)
        pod = spec["template"]["spec"]
        fail.check(sa_name and pod.get("serviceAccountName") == sa_name and job["metadata"].get("namespace") == sa_ns, rel,
                   f"finalize must run as the same service account as the shards ({sa_ns}/{sa_name})")
        if run_c:
            args, run_args = [str(a) for a in c.get("args", [])], [str(a) for a in run_c.get("args", [])]
            fail.check(c.get("image") == run_c.get("image"), rel, "finalize must use the same image as job.yaml")
            fail.check(args[1:2] == run_args[1:2] and all(flag_value(args, f) == flag_value(run_args, f) for f in ("--dest", "--kms-key")),
                       rel, "finalize must name the same plan, --dest and --kms-key as job.yaml")
            missing = sorted({e.get("name") for e in run_c.get("env", [])} - {e.get("name") for e in c.get("env", [])} - {"EHRLIFT_SHARDS", "EHRLIFT_SHARD"})
            fail.check(not missing, rel, f"finalize loads the same plan, so it needs job.yaml's environment too; missing {missing}")
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


# Each: (file, text to replace, its replacement, a phrase the failure must contain). One
# break a copy; every copy must fail, naming the file and that phrase.
BREAKS = [
    ("infra/k8s/job.yaml", 'name: EHRLIFT_SHARDS\n              value: "4"', 'name: EHRLIFT_SHARDS\n              value: "3"', "EHRLIFT_SHARDS"),
    ("infra/k8s/job.yaml", "completions: 4", "completions: 8", "EHRLIFT_SHARDS"),
    ("infra/k8s/job.yaml", "parallelism: 4", "parallelism: 5", "parallelism"),
    ("infra/k8s/job.yaml", "values: [1, 2, 4]", "values: [1, 2, 3, 4]", "exit code 3"),
    ("infra/k8s/job.yaml", "  backoffLimitPerIndex: 3\n", "", "backoffLimitPerIndex"),
    ("infra/k8s/job.yaml", "completionMode: Indexed", "completionMode: NonIndexed", "Indexed"),
    ("infra/k8s/job.yaml", "backoffLimitPerIndex: 3", "backoffLimitPerindex: 3", "unknown Job spec field"),
    ("infra/k8s/job.yaml", "            - --json\n", "            - --json\n            - --shard=0/4\n", "--shard"),
    ("infra/k8s/job.yaml", "            - --json\n", "            - --json\n            - --fresh\n", "--fresh"),
    ("infra/k8s/job.yaml", "          env:\n", "          env:\n            - name: EHRLIFT_SHARD\n              value: 0/4\n", "EHRLIFT_SHARD"),
    ("infra/k8s/finalize-job.yaml", "serviceAccountName: ehrlift", "serviceAccountName: default", "service account"),
    ("infra/k8s/finalize-job.yaml", "            - finalize\n", "            - run\n", "`ehrlift finalize PLAN"),
    ("infra/k8s/finalize-job.yaml", "s3://BUCKET/PREFIX", "s3://BUCKET/OTHER", "same plan"),
    ("infra/terraform/batch.tf", 'action       = "RETRY"\n      on_exit_code = "3"', 'action       = "RETRY"\n      on_exit_code = "4"', "RETRY on exit code 3"),
    ("infra/terraform/batch.tf", '"--log-format", "json",\n      "--json",', '"--log-format", "json",\n      "--json", "--shard", "0/4",', "--shard"),
    ("infra/terraform/batch.tf", '"--log-format", "json",\n      "--json",', '"--log-format", "json",\n      "--json", "--fresh",', "--fresh"),
    ("infra/terraform/batch.tf", '"finalize", var.plan_path,', '"run", var.plan_path,', "finalize PLAN"),
    ("infra/terraform/batch.tf", "jobRoleArn = aws_iam_role.finalize.arn", "jobRoleArn = aws_iam_role.job.arn", "least privilege"),
    ("infra/terraform/iam.tf", 'actions   = ["s3:GetObject", "s3:PutObject"]\n    resources = ["${local.bucket_arn}/${local.meta_prefix}*"]',
     'actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]\n    resources = ["${local.bucket_arn}/${local.meta_prefix}*"]', "finalize role"),
    ("infra/terraform/versions.tf", 'runs_prefix = "${local.meta_prefix}runs/"', 'runs_prefix = local.meta_prefix', "runs_prefix"),
    ("infra/terraform/batch.tf", "jobRoleArn = aws_iam_role.finalize.arn", "jobRoleArn = aws_iam_role.finalise.arn", "which no file declares"),
]


def self_test(hcl2, yaml):
    """Runs the checks over copies with one thing broken; returns the copies that passed."""
    missed = []
    for rel, old, new, phrase in BREAKS:
        text = Tree().read(rel)
        if old not in text:
            missed.append(f"{rel}: the self-test's break {old!r} no longer applies (update BREAKS)")
            continue
        fail = Failures()
        tree = Tree({rel: text.replace(old, new, 1)})
        try:
            check_terraform(hcl2, tree, fail)
            check_k8s(yaml, tree, fail)
        except SystemExit as e:
            fail.items.append(str(e))
        if not any(rel in f and phrase in f for f in fail.items):
            got = "; ".join(fail.items) or "no failure at all"
            missed.append(f"{rel}: with {new.strip()!r} for {old.strip()!r} no check failed naming {phrase!r} (got: {got})")
    return missed


def main_in_venv():
    start = time.monotonic()
    import hcl2
    import yaml
    from dockerfile_parse import DockerfileParser

    fail = Failures()
    n_tf = check_terraform(hcl2, Tree(), fail)
    n_k8s = check_k8s(yaml, Tree(), fail)
    check_dockerfile(DockerfileParser, fail)
    fail.items = [f for f in fail.items if not f.endswith(": ")]
    if fail.items:
        print(f"infra check: {len(fail.items)} problem(s):", file=sys.stderr)
        for item in fail.items:
            print(f"  {item}", file=sys.stderr)
        sys.exit(1)
    missed = self_test(hcl2, yaml)
    if missed:
        print(f"infra check: the self-test found {len(missed)} check(s) that do not bite:", file=sys.stderr)
        for item in missed:
            print(f"  {item}", file=sys.stderr)
        sys.exit(1)
    print(f"infra check: ok ({n_tf} terraform files, {n_k8s} kubernetes objects, Dockerfile; "
          f"{len(BREAKS)} broken copies all caught) in {time.monotonic() - start:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    if os.environ.get("EHRLIFT_INFRA_IN_VENV") == "1":
        main_in_venv()
    else:
        py = ensure_venv()
        env = dict(os.environ, EHRLIFT_INFRA_IN_VENV="1")
        sys.exit(subprocess.run([py, os.path.abspath(__file__)], env=env).returncode)
