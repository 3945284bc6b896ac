# Internet-facing Application Load Balancer: HTTP 80 forwarding to the app's target groups.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "ALB: HTTP and HTTPS from anywhere"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-alb" })

  ingress {
    description = "HTTP from anywhere"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  ingress {
    description = "HTTPS from anywhere"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "to the app targets in the VPC"
    from_port   = var.app_port
    to_port     = var.app_port
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.this.cidr_block]
  }
}

data "aws_vpc" "this" {
  id = var.vpc_id
}

resource "aws_lb" "this" {
  name                       = "${var.name}-alb"
  internal                   = false
  load_balancer_type         = "application"
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  tags                       = merge(var.tags, { Name = "${var.name}-alb" })
}

# The app's target group: the ECS service's (Fargate tasks register by IP; the primary's EC2
# group brings its own), or in the second region the copied group's (instance). Replaced, a
# new one is created (and the listener moved to it) before the old one goes, since a group a
# listener forwards to cannot be deleted.
resource "aws_lb_target_group" "app" {
  name        = "${var.name}-app"
  port        = var.app_port
  protocol    = "HTTP"
  vpc_id      = var.vpc_id
  target_type = var.target_type
  tags        = merge(var.tags, { Name = "${var.name}-app-tg" })

  health_check {
    path = "/health"
  }

  lifecycle {
    create_before_destroy = true
  }
}

locals {
  # The groups the listener forwards to, by weight. A group at weight 0 gets no users, but AWS
  # health-checks a target group only while a listener forwards to it, so a compute about to
  # take the traffic (or to take it back) is proven healthy there first.
  forward = concat(
    var.own_weight == null ? [] : [{ arn = aws_lb_target_group.app.arn, weight = var.own_weight }],
    var.other_target_group_arn == null ? [] : [{ arn = var.other_target_group_arn, weight = var.other_weight }],
  )
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"
  tags              = merge(var.tags, { Name = "${var.name}-http" })

  default_action {
    type             = "forward"
    target_group_arn = length(local.forward) == 1 ? local.forward[0].arn : null

    dynamic "forward" {
      for_each = length(local.forward) > 1 ? [local.forward] : []
      content {
        dynamic "target_group" {
          for_each = forward.value
          content {
            arn    = target_group.value.arn
            weight = target_group.value.weight
          }
        }
      }
    }
  }
}
