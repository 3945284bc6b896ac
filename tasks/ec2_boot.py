"""What an EC2 instance of the Graviton group does at boot to run the container as ECS ran it.

ECS gave the task four things the instance must now give it itself:

- its **secrets**, which the ECS agent fetched with the execution role: the boot script reads
  each from SSM Parameter Store or Secrets Manager with the instance role into an env file on
  tmpfs (/run, mode 600) that `docker run --env-file` reads. User data and the launch template
  hold only the parameter and secret ARNs, never a value;
- its **log configuration**: Docker's own awslogs driver ships to the same CloudWatch Logs
  group (ECS's `awslogs-stream-prefix` becomes the stream PREFIX/CONTAINER/INSTANCE-ID);
- its **health check**: the container's Docker HEALTHCHECK options, as ECS ran them;
- its **task role**: `task_role_policy_names` and `boot_policy` say what the instance role
  carries (the task role's own policies, plus logs and secrets for the boot).

The container reaches the instance role through IMDSv2 from Docker's bridge network, one hop
further than the host: the launch template allows two hops (METADATA_HOP_LIMIT).
"""

import shlex
from typing import Any

from phasegate.inventory import Inventory
from tasks.compute_common import parse_ecr_image

METADATA_HOP_LIMIT = 2
ENV_FILE = "/run/phasegate/app.env"
SUPPORTED_LOG_DRIVERS = ("awslogs",)
_IMDS = "http://169.254.169.254/latest"


def split_secret(value_from: str, region: str, account: str) -> dict[str, str]:
    """A container secret's `valueFrom` as what to fetch: service, id, resource ARN, and for
    Secrets Manager the JSON key and version the ARN's suffix may name."""
    parts = value_from.split(":")
    if value_from.startswith("arn:") and parts[2] == "secretsmanager":
        arn = ":".join(parts[:7])
        extra = [*parts[7:], "", "", ""][:3]
        return {
            "service": "secretsmanager",
            "id": arn,
            "resource": arn,
            "region": parts[3],
            "json_key": extra[0],
            "version_stage": extra[1],
            "version_id": extra[2],
        }
    if value_from.startswith("arn:"):
        return {"service": "ssm", "id": value_from, "resource": value_from, "region": parts[3]}
    name = value_from.lstrip("/")
    return {
        "service": "ssm",
        "id": value_from,
        "resource": f"arn:aws:ssm:{region}:{account}:parameter/{name}",
        "region": region,
    }


def _fetch(secret: dict[str, str]) -> str:
    """The shell command that prints the secret's value."""
    if secret["service"] == "ssm":
        return shlex.join(
            ["aws", "ssm", "get-parameter", "--region", secret["region"], "--with-decryption",
             "--name", secret["id"], "--query", "Parameter.Value", "--output", "text"]
        )  # fmt: skip
    command = ["aws", "secretsmanager", "get-secret-value", "--region", secret["region"]]
    command += ["--secret-id", secret["id"]]
    if secret.get("version_stage"):
        command += ["--version-stage", secret["version_stage"]]
    if secret.get("version_id"):
        command += ["--version-id", secret["version_id"]]
    command += ["--query", "SecretString", "--output", "text"]
    fetch = shlex.join(command)
    if secret.get("json_key"):
        pick = "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])"
        fetch += " | " + shlex.join(["python3", "-c", pick, secret["json_key"]])
    return fetch


def log_refusal(container: dict[str, Any]) -> str | None:
    """Why the container's logging cannot be carried over, or None."""
    driver = (container.get("logConfiguration") or {}).get("logDriver")
    if driver is None or driver in SUPPORTED_LOG_DRIVERS:
        return None
    return (
        f"container {container['name']} logs with {driver}; the EC2 target carries over "
        f"{', '.join(SUPPORTED_LOG_DRIVERS)} only"
    )


def _log_args(container: dict[str, Any]) -> list[str]:
    """Docker's awslogs options for the container's awslogs configuration."""
    config = container.get("logConfiguration") or {}
    if config.get("logDriver") != "awslogs":
        return []
    args = ["--log-driver", "awslogs"]
    for key, value in sorted(config.get("options", {}).items()):
        if key != "awslogs-stream-prefix":  # Docker has no prefix; the stream is named below
            args += ["--log-opt", f"{key}={value}"]
    return args


def _log_stream(container: dict[str, Any]) -> str:
    """ECS's stream name PREFIX/CONTAINER/TASK-ID, with the instance id for the task id."""
    config = container.get("logConfiguration") or {}
    prefix = config.get("options", {}).get("awslogs-stream-prefix")
    if config.get("logDriver") != "awslogs" or not prefix:
        return ""
    return f' --log-opt "awslogs-stream={prefix}/{container["name"]}/${{INSTANCE_ID}}"'


def _health_args(container: dict[str, Any]) -> list[str]:
    """The container's ECS health check as `docker run` options."""
    health = container.get("healthCheck")
    if not health or not health.get("command"):
        return []
    kind, *rest = health["command"]
    if kind == "NONE":
        return ["--no-healthcheck"]
    command = rest[0] if kind == "CMD-SHELL" else shlex.join(rest)
    return [
        "--health-cmd", command,
        "--health-interval", f"{health.get('interval', 30)}s",
        "--health-timeout", f"{health.get('timeout', 5)}s",
        "--health-retries", str(health.get("retries", 3)),
        "--health-start-period", f"{health.get('startPeriod', 0)}s",
    ]  # fmt: skip


def user_data(
    container: dict[str, Any], port: int, region: str | None = None, account: str = ""
) -> str:
    """The instances' boot script: run the task definition's container with Docker, with its
    secrets, logs and health check as ECS gave them.

    The ECS-optimized AMI has Docker; its ECS agent is stopped because these instances join no
    cluster. An ECR image needs a registry login, which the instance role allows.
    """
    image = container["image"]
    ecr = parse_ecr_image(image)
    region = region or (ecr.region if ecr else "us-east-1")
    secrets = [
        (s["name"], split_secret(s["valueFrom"], region, account))
        for s in container.get("secrets", [])
    ]
    lines = [
        "#!/bin/bash",
        f"# phasegate compute.graviton: run {image} on port {port}, as the ECS task did.",
        "set -euo pipefail",
        "command -v docker >/dev/null || dnf install -y docker",
        "systemctl enable --now docker",
        "systemctl disable --now ecs 2>/dev/null || true",
    ]
    if ecr or secrets:
        lines.append("command -v aws >/dev/null || dnf install -y awscli-2")
    if ecr:
        lines.append(
            f"aws ecr get-login-password --region {ecr.region} "
            f"| docker login --username AWS --password-stdin {ecr.registry}"
        )
    if _log_stream(container):
        lines += [
            f"TOKEN=$(curl -sf -X PUT {_IMDS}/api/token "
            "-H 'X-aws-ec2-metadata-token-ttl-seconds: 300')",
            f'INSTANCE_ID=$(curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" '
            f"{_IMDS}/meta-data/instance-id)",
        ]
    run = ["docker", "run", "--detach", "--name", container["name"]]
    run += ["--restart", "unless-stopped", "--publish", f"{port}:{port}"]
    if secrets:
        # Values are read at boot with the instance role, onto tmpfs, readable by root only.
        lines += ["umask 077", f"mkdir -p {ENV_FILE.rsplit('/', 1)[0]}", f": > {ENV_FILE}"]
        for name, secret in secrets:
            lines += [
                f"value=$({_fetch(secret)})",
                f"printf '%s=%s\\n' {shlex.quote(name)} \"$value\" >> {ENV_FILE}",
            ]
        lines.append("unset value")
        run += ["--env-file", ENV_FILE]
    for variable in container.get("environment", []):
        run += ["--env", f"{variable['name']}={variable['value']}"]
    run += _log_args(container) + _health_args(container)
    entry_point = list(container.get("entryPoint") or [])
    if entry_point:
        run += ["--entrypoint", entry_point[0]]
    tail = shlex.join([image, *entry_point[1:], *(container.get("command") or [])])
    lines += [f"docker pull {shlex.quote(image)}", shlex.join(run) + _log_stream(container)]
    lines[-1] += " " + tail
    return "\n".join([*lines, ""])


def boot_policy(container: dict[str, Any], region: str, account: str) -> dict[str, Any] | None:
    """What the instance role needs for the boot (ECS's execution role's share): writing to the
    container's log group, reading its secrets (and KMS decrypting them through those services
    only). None when the container has neither."""
    statements: list[dict[str, Any]] = []
    config = container.get("logConfiguration") or {}
    group = config.get("options", {}).get("awslogs-group")
    if config.get("logDriver") == "awslogs" and group:
        group_region = config["options"].get("awslogs-region", region)
        actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
        if config["options"].get("awslogs-create-group") == "true":
            actions.append("logs:CreateLogGroup")
        statements.append(
            {
                "Effect": "Allow",
                "Action": actions,
                "Resource": f"arn:aws:logs:{group_region}:{account}:log-group:{group}:*",
            }
        )
    secrets = [split_secret(s["valueFrom"], region, account) for s in container.get("secrets", [])]
    ssm = sorted({s["resource"] for s in secrets if s["service"] == "ssm"})
    managed = sorted({s["resource"] for s in secrets if s["service"] == "secretsmanager"})
    if ssm:
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                "Resource": ssm,
            }
        )
    if managed:
        statements.append(
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": managed}
        )
    if secrets:
        services = sorted({f"{s['service']}.{s['region']}.amazonaws.com" for s in secrets})
        statements.append(
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": services}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


def data_store_cidrs(inventory: Inventory, vpc_id: str) -> tuple[list[str], list[str]]:
    """The VPC's private and public subnet CIDRs: whom the data stores admit today, and where
    the instances come from."""
    subnets = [s for vpc in inventory.vpcs if vpc.id == vpc_id for s in vpc.subnets]
    return (
        sorted(s.cidr for s in subnets if not s.public),
        sorted(s.cidr for s in subnets if s.public),
    )
