# The primary's ECS module again: the same cluster, task definition and service names, the
# same image and architecture, behind this region's ALB, with an execution role of its own
# (IAM is global: the primary's role is named after the environment alone).

module "compute" {
  source                   = "../compute_ecs"
  count                    = var.compute_enabled ? 1 : 0
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
