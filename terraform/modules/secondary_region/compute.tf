# The primary's compute module again, whichever serves there: the ECS module (the same
# cluster, task definition and service names, image and architecture) or the EC2 module (the
# same launch template and group names, instance type and sizes, on this region's own AMI),
# behind this region's ALB, with IAM roles of their own (IAM is global: the primary's are
# named after the environment alone).

module "compute" {
  source                   = "../compute_ecs"
  count                    = var.compute_enabled && var.compute_mode != "ec2" ? 1 : 0
  name                     = var.name
  role_suffix              = "-${var.region}"
  region                   = var.region
  image                    = var.image
  app_port                 = var.app_port
  cpu_architecture         = var.cpu_architecture
  desired_count            = var.desired_count
  subnet_ids               = aws_subnet.public[*].id
  assign_public_ip         = true
  security_group_id        = aws_security_group.app[0].id
  target_group_arn         = module.alb[0].target_group_arn
  enable_spot              = false
  spot_fargate_base        = 0
  spot_fargate_weight      = 1
  spot_fargate_spot_weight = 0
  tags                     = local.tags.compute
}

module "compute_ec2" {
  source              = "../compute_ec2"
  count               = var.compute_enabled && var.compute_mode == "ec2" ? 1 : 0
  name                = var.name
  role_suffix         = "-${var.region}"
  image               = var.image
  app_port            = var.app_port
  instance_type       = var.ec2_instance_type
  min_size            = var.asg_min
  max_size            = var.asg_max
  desired_capacity    = min(max(var.asg_min, var.desired_count), var.asg_max)
  subnet_ids          = aws_subnet.public[*].id
  security_group_id   = aws_security_group.app[0].id
  vpc_id              = aws_vpc.this.id
  own_target_group    = false
  target_group_arn    = module.alb[0].target_group_arn
  group_metrics       = []
  enable_spot         = false
  spot_on_demand_base = 0
  spot_instance_types = []
  tags                = local.tags.compute
}
