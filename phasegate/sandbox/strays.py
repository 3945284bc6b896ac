"""`phasegate sandbox up --with-strays`: what a real account keeps in its private subnets.

A real VPC is rarely only the environment's own service: someone's batch box runs there, a
Lambda function is attached to the VPC. Both reach the internet through the NAT gateways and
would be cut off by their removal, so nat.assess and nat.remove must name them as blockers.
This adds both to a seeded environment, deliberately without its discovery tags (nobody told
phasegate about them), for the demo of blockers:

- an EC2 instance `NAME-batch-box` (tag Name only) in the first private subnet;
- a Lambda function's network interface in the second one, described as AWS describes it
  ("AWS Lambda VPC ENI-FUNCTION-UUID"); moto lets nobody set the interface type Lambda
  gives its interfaces, and the description is what marks them on AWS too.
"""

import uuid

from pydantic import BaseModel

from phasegate.aws import AwsClients
from phasegate.errors import PhasegateError


class Strays(BaseModel):
    """What `seed_strays` made: ids to acknowledge in nat.accept_egress_loss."""

    instance_id: str
    instance_interface_id: str
    lambda_interface_id: str


def seed_strays(clients: AwsClients, name: str) -> Strays:
    """An unmanaged EC2 instance and a Lambda interface in seeded environment `name`'s private
    subnets (tagged Environment=NAME and Name=NAME-private-*)."""
    ec2 = clients.ec2
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "tag:Environment", "Values": [name]},
            {"Name": "tag:Name", "Values": [f"{name}-private-*"]},
        ]
    )["Subnets"]
    private = sorted(s["SubnetId"] for s in subnets)
    if not private:
        raise PhasegateError(f"sandbox environment {name}: no subnet tagged {name}-private-*")
    vpc_id = subnets[0]["VpcId"]
    image = ec2.describe_images(Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"][
        0
    ]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=private[0],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"{name}-batch-box"}]}
        ],
    )["Instances"][0]
    function = f"{name}-thumbnailer"
    group = ec2.create_security_group(
        GroupName=f"{function}-lambda",
        Description=f"Lambda function {function}: egress only",
        VpcId=vpc_id,
    )["GroupId"]
    lambda_eni = ec2.create_network_interface(
        SubnetId=private[-1],
        Groups=[group],
        Description=f"AWS Lambda VPC ENI-{function}-{uuid.uuid4()}",
    )["NetworkInterface"]["NetworkInterfaceId"]
    return Strays(
        instance_id=instance["InstanceId"],
        instance_interface_id=instance["NetworkInterfaces"][0]["NetworkInterfaceId"],
        lambda_interface_id=lambda_eni,
    )
