# The EC2 alternative: an Auto Scaling group (asg_min..asg_max) of Graviton instances from a
# launch template (ECS-optimized AL2023 arm64 AMI) whose user data runs the app's image with
# Docker, registered in an instance target group of its own that the ALB's listener forwards
# to as the root module says. With phase 3's Spot the group runs a
# mixed-instances policy over the same launch template instead (an in-place update).

data "aws_ssm_parameter" "arm64_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "pull_image" {
  statement {
    actions = [
      "ecr:GetAuthorizationToken",
      "ecr:BatchCheckLayerAvailability",
      "ecr:GetDownloadUrlForLayer",
      "ecr:BatchGetImage",
    ]
    resources = ["*"] #checkov:skip=CKV_AWS_356:GetAuthorizationToken takes no resource
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-app-instance${var.role_suffix}"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
  tags               = merge(var.tags, { Name = "${var.name}-app-instance${var.role_suffix}" })
}

resource "aws_iam_role_policy" "pull_image" {
  name   = "pull-image"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.pull_image.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-app-instance${var.role_suffix}"
  role = aws_iam_role.instance.name
  tags = merge(var.tags, { Name = "${var.name}-app-instance${var.role_suffix}" })
}

resource "aws_launch_template" "app" {
  name                   = "${var.name}-app"
  image_id               = data.aws_ssm_parameter.arm64_ami.value
  instance_type          = var.instance_type
  update_default_version = true
  user_data = base64encode(templatefile("${path.module}/user_data.sh.tftpl", {
    image = var.image
    port  = var.app_port
  }))
  tags = merge(var.tags, { Name = "${var.name}-app" })

  iam_instance_profile {
    name = aws_iam_instance_profile.instance.name
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = true
    security_groups             = [var.security_group_id]
    delete_on_termination       = true
  }

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }
}

# The group's own instance target group, beside the ECS service's ip group: both serve while
# the listener moves from one to the other. None when the group is given one (the second
# region's copy registers in its ALB's group).
resource "aws_lb_target_group" "app" {
  count       = var.own_target_group ? 1 : 0
  name        = "${var.name}-app-instance"
  port        = var.app_port
  protocol    = "HTTP"
  vpc_id      = var.vpc_id
  target_type = "instance"
  tags        = merge(var.tags, { Name = "${var.name}-app-instance-tg" })

  health_check {
    path = "/health"
  }

  # AWS refuses to delete a group a listener forwards to: with this, Terraform updates the
  # listener first and deletes the group after (removing the group came first, and failed).
  lifecycle {
    create_before_destroy = true
  }
}

moved {
  from = aws_lb_target_group.app
  to   = aws_lb_target_group.app[0]
}

locals {
  target_group_arn = var.own_target_group ? aws_lb_target_group.app[0].arn : var.target_group_arn
}

resource "aws_autoscaling_group" "app" {
  name                      = "${var.name}-app"
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = var.subnet_ids
  target_group_arns         = [local.target_group_arn]
  health_check_type         = "ELB"
  health_check_grace_period = 120
  enabled_metrics           = var.group_metrics
  metrics_granularity       = "1Minute"

  dynamic "launch_template" {
    for_each = var.enable_spot ? [] : [aws_launch_template.app]
    content {
      id      = launch_template.value.id
      version = launch_template.value.latest_version
    }
  }

  # Phase 3 (spot.enable): `spot_on_demand_base` instances on-demand, the rest Spot from the
  # pools likeliest to last at the lowest price, over several same-size Graviton types; a
  # replacement is launched when AWS signals a reclaim is likely.
  capacity_rebalance = var.enable_spot

  dynamic "mixed_instances_policy" {
    for_each = var.enable_spot ? [aws_launch_template.app] : []
    content {
      instances_distribution {
        on_demand_base_capacity                  = var.spot_on_demand_base
        on_demand_percentage_above_base_capacity = 0
        spot_allocation_strategy                 = "price-capacity-optimized"
      }
      launch_template {
        launch_template_specification {
          launch_template_id = mixed_instances_policy.value.id
          version            = mixed_instances_policy.value.latest_version
        }
        dynamic "override" {
          for_each = var.spot_instance_types
          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  # desired_capacity is the starting size: with phase 2's target tracking AWS sets it (and
  # keeps it within min_size..max_size), so neither a plan nor an apply fights it.
  lifecycle {
    ignore_changes = [desired_capacity]
  }

  dynamic "tag" {
    for_each = merge(var.tags, { Name = "${var.name}-app" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
