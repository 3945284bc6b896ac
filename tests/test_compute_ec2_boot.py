"""The EC2 Auto Scaling target runs the container as ECS ran it, read back from AWS: the task
role's permissions on the instance role, the same log group, the health check, secrets fetched
at boot (never in user data or the launch template), IMDSv2, and the data stores admitting the
instances' new security group until rollback."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_environment

from phasegate.aws import AwsClients
from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.lifecycle import execute, undo
from phasegate.steps import StepContext
from tasks.compute import GravitonCompute

DB_PASSWORD = "pg-value-never-in-user-data"
STRIPE_KEY = "sk-value-never-in-user-data"
TASK_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::demo/*"}],
}
HEALTH = {
    "command": ["CMD-SHELL", "curl -f http://localhost:8000/health || exit 1"],
    "interval": 15,
    "timeout": 4,
    "retries": 2,
    "startPeriod": 20,
}


def give_the_task_a_role_secrets_and_a_health_check(clients: AwsClients) -> dict[str, str]:
    """A new revision of the seeded task definition with a task role (one inline, one managed
    policy), two secrets (an SSM SecureString, a JSON key of a Secrets Manager secret) and a
    health check; the service runs it. The ARNs made."""
    iam = clients.iam
    role = iam.create_role(
        RoleName="demo-api-task",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="demo-api-task", PolicyName="read-assets", PolicyDocument=json.dumps(TASK_POLICY)
    )
    managed = iam.create_policy(
        PolicyName="demo-api-queue",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="demo-api-task", PolicyArn=managed)
    clients.ssm.put_parameter(Name="/demo/api/db-password", Value=DB_PASSWORD, Type="SecureString")
    parameter = clients.ssm.get_parameter(Name="/demo/api/db-password")["Parameter"]["ARN"]
    secret = clients.secretsmanager.create_secret(
        Name="demo/api/keys", SecretString=json.dumps({"stripe": STRIPE_KEY})
    )["ARN"]

    ecs = clients.ecs
    svc = ecs.describe_services(cluster="demo-cluster", services=["demo-api"])["services"][0]
    current = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
    [container] = current["containerDefinitions"]
    container = {
        **container,
        "secrets": [
            {"name": "DB_PASSWORD", "valueFrom": parameter},
            {"name": "STRIPE_KEY", "valueFrom": f"{secret}:stripe::"},
        ],
        "healthCheck": HEALTH,
    }
    revision = ecs.register_task_definition(
        family=current["family"],
        taskRoleArn=role,
        requiresCompatibilities=current["requiresCompatibilities"],
        networkMode=current["networkMode"],
        cpu=current["cpu"],
        memory=current["memory"],
        runtimePlatform=current["runtimePlatform"],
        containerDefinitions=[container],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="demo-cluster", service="demo-api", taskDefinition=revision)
    return {"role": role, "managed": managed, "parameter": parameter, "secret": secret}


def data_store_sources(clients: AwsClients) -> set[tuple[int, str]]:
    db = clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    [group_id] = [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]]
    [group] = clients.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return {
        (p["FromPort"], pair["GroupId"])
        for p in group["IpPermissions"]
        for pair in p["UserIdGroupPairs"]
    }


@pytest.fixture
def ec2_config(seeded: EnvironmentConfig, sandbox: str, tmp_path: Path) -> EnvironmentConfig:
    path = write_environment(tmp_path, "demo", sandbox, targets={"compute": "ec2-asg-graviton"})
    return parse_environment(path)


def role_policies(clients: AwsClients, role: str) -> dict[str, Any]:
    iam = clients.iam
    return {
        name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }


def test_the_instances_run_the_container_as_ecs_did(ec2_config: EnvironmentConfig) -> None:
    step = GravitonCompute(StepContext.for_environment(ec2_config))
    clients = step.clients
    made = give_the_task_a_role_secrets_and_a_health_check(clients)

    record = execute(step, key="t")

    assert record.outcome == "applied"
    version = clients.ec2.describe_launch_template_versions(
        LaunchTemplateName="demo-app-graviton", Versions=["$Latest"]
    )["LaunchTemplateVersions"][0]
    template = version["LaunchTemplateData"]
    script = base64.b64decode(template["UserData"]).decode()

    # IMDSv2 required, with a hop for the container on Docker's bridge.
    assert template["MetadataOptions"]["HttpTokens"] == "required"
    assert template["MetadataOptions"]["HttpPutResponseHopLimit"] == 2

    # Secrets: fetched at boot by ARN into an env file; no value anywhere in the template.
    for value in (DB_PASSWORD, STRIPE_KEY):
        assert value not in script and value not in json.dumps(version, default=str)
    assert (
        f"aws ssm get-parameter --region us-east-1 --with-decryption --name {made['parameter']}"
        in script
    )
    assert f"--secret-id {made['secret']} --query SecretString" in script
    assert "json.load(sys.stdin)[sys.argv[1]])' stripe)" in script
    assert "printf '%s=%s\\n' DB_PASSWORD \"$value\" >> /run/phasegate/app.env" in script
    assert "--env-file /run/phasegate/app.env" in script

    # Logs: the same CloudWatch Logs group, ECS's stream prefix.
    assert "--log-driver awslogs" in script
    assert "--log-opt awslogs-group=/ecs/demo-api" in script
    assert '--log-opt "awslogs-stream=api/api/${INSTANCE_ID}"' in script

    # Health check: the container's, as Docker options.
    assert "--health-cmd 'curl -f http://localhost:8000/health || exit 1'" in script
    assert "--health-interval 15s --health-timeout 4s --health-retries 2" in script
    assert "--health-start-period 20s" in script

    # The instance role: the task role's policies, the log group, the secrets.
    profile = template["IamInstanceProfile"]["Name"]
    [role] = clients.iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"][
        "Roles"
    ]
    policies = role_policies(clients, role["RoleName"])
    assert policies["task-read-assets"] == TASK_POLICY
    attached = clients.iam.list_attached_role_policies(RoleName=role["RoleName"])
    assert [p["PolicyArn"] for p in attached["AttachedPolicies"]] == [made["managed"]]
    boot = {json.dumps(s["Action"]): s["Resource"] for s in policies["boot"]["Statement"]}
    assert boot[json.dumps(["logs:CreateLogStream", "logs:PutLogEvents"])].endswith(
        ":log-group:/ecs/demo-api:*"
    )
    assert boot[json.dumps(["ssm:GetParameter", "ssm:GetParameters"])] == [made["parameter"]]
    assert boot[json.dumps("secretsmanager:GetSecretValue")] == [made["secret"]]

    # The data stores admit the instances' security group as they admit the private subnets.
    [group_id] = template["NetworkInterfaces"][0]["Groups"]
    assert {(5432, group_id), (6379, group_id)} <= data_store_sources(clients)

    undo(step)
    assert not {source for _, source in data_store_sources(clients)} & {group_id}
    assert "demo-api-task" in {r["RoleName"] for r in clients.iam.list_roles()["Roles"]}
    assert role["RoleName"] not in {r["RoleName"] for r in clients.iam.list_roles()["Roles"]}
