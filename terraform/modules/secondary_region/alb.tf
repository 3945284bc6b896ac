# The primary's ALB module again (its security group, ALB, target group and listener), and the
# app's security group open to it only.

module "alb" {
  source                 = "../alb"
  count                  = var.alb_enabled ? 1 : 0
  name                   = local.short_name
  vpc_id                 = aws_vpc.this.id
  public_subnet_ids      = aws_subnet.public[*].id
  app_port               = var.app_port
  target_type            = var.compute_mode == "ec2" ? "instance" : "ip"
  own_weight             = 1
  other_target_group_arn = null
  other_weight           = 0
  tags                   = local.tags.alb
}

resource "aws_security_group" "app" {
  count       = var.alb_enabled ? 1 : 0
  name        = "${local.short_name}-app"
  description = "App tasks: port ${var.app_port} from the ALB"
  vpc_id      = aws_vpc.this.id
  tags        = merge(local.tags.alb, { Name = "${local.short_name}-app" })

  ingress {
    description     = "app port from the ALB"
    from_port       = var.app_port
    to_port         = var.app_port
    protocol        = "tcp"
    security_groups = [module.alb[0].security_group_id]
  }

  egress {
    description = "image pulls, AWS APIs and the data stores"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"] #checkov:skip=CKV_AWS_382:the app needs ECR, AWS APIs and outside HTTPS
  }
}
