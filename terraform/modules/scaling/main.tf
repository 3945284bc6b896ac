# Phase 2's target tracking: on the ECS service's desired count (Application Auto Scaling,
# with cooldowns), or on the EC2 Auto Scaling group (EC2 Auto Scaling, with instance warmup).
# Two policies either way, on average CPU and on the ALB's requests per target, named
# ENV-cpu and ENV-requests as phasegate's scaling.enable names them.

locals {
  ecs    = var.compute_mode == "ecs-fargate"
  policy = { cpu = "${var.name}-cpu", requests = "${var.name}-requests" }
}

resource "aws_appautoscaling_target" "service" {
  count              = local.ecs ? 1 : 0
  service_namespace  = "ecs"
  resource_id        = "service/${var.ecs_cluster}/${var.ecs_service}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
  tags               = var.tags
}

resource "aws_appautoscaling_policy" "service" {
  for_each = local.ecs ? {
    (local.policy.cpu)      = { metric = "ECSServiceAverageCPUUtilization", target = var.cpu_target_percent, label = null }
    (local.policy.requests) = { metric = "ALBRequestCountPerTarget", target = var.requests_per_target, label = var.resource_label }
  } : {}
  name               = each.key
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[0].service_namespace
  resource_id        = aws_appautoscaling_target.service[0].resource_id
  scalable_dimension = aws_appautoscaling_target.service[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.target
    scale_in_cooldown  = var.scale_in_cooldown_seconds
    scale_out_cooldown = var.scale_out_cooldown_seconds

    predefined_metric_specification {
      predefined_metric_type = each.value.metric
      resource_label         = each.value.label
    }
  }
}

resource "aws_autoscaling_policy" "group" {
  for_each = local.ecs ? {} : {
    (local.policy.cpu)      = { metric = "ASGAverageCPUUtilization", target = var.cpu_target_percent, label = null }
    (local.policy.requests) = { metric = "ALBRequestCountPerTarget", target = var.requests_per_target, label = var.resource_label }
  }
  name                      = each.key
  autoscaling_group_name    = var.autoscaling_group
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.instance_warmup_seconds

  target_tracking_configuration {
    target_value = each.value.target

    predefined_metric_specification {
      predefined_metric_type = each.value.metric
      resource_label         = each.value.label
    }
  }
}
