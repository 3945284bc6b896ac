# Phase 2's monitoring (phasegate's monitoring.enable): the alert topic and its subscriptions,
# a dashboard with a widget per component, alarms on the ALB, compute, RDS, Redis, scaling
# at max and log errors, a monthly budget on the environment's cost-allocation tag, and a
# metric filter counting error lines. Names and contents are the step's (ENV-alerts,
# ENV-overview, ENV-monthly, ENV-errors, ENV-...), so its verify reads them back as its own.

locals {
  ecs = var.compute_mode == "ecs-fargate"
  elb = "AWS/ApplicationELB"
  alb = { LoadBalancer = var.load_balancer }
  t = merge({
    evaluation_minutes         = 3
    target_5xx_per_minute      = 5
    elb_5xx_per_minute         = 5
    p99_response_seconds       = 1
    unhealthy_hosts            = 0
    compute_cpu_percent        = 80
    rds_cpu_percent            = 80
    rds_free_storage_gb        = 2
    redis_memory_percent       = 80
    redis_evictions_per_minute = 0
    log_errors_per_minute      = 10
  }, var.thresholds)
  service = { ClusterName = var.ecs_cluster, ServiceName = var.ecs_service }
  group   = { AutoScalingGroupName = var.autoscaling_group }

  alarms = merge(
    {
      "${var.name}-alb-target-5xx"      = { namespace = local.elb, metric = "HTTPCode_Target_5XX_Count", stat = "Sum", dimensions = local.alb, threshold = local.t.target_5xx_per_minute, comparison = "GreaterThanThreshold" }
      "${var.name}-alb-elb-5xx"         = { namespace = local.elb, metric = "HTTPCode_ELB_5XX_Count", stat = "Sum", dimensions = local.alb, threshold = local.t.elb_5xx_per_minute, comparison = "GreaterThanThreshold" }
      "${var.name}-alb-p99-latency"     = { namespace = local.elb, metric = "TargetResponseTime", stat = "p99", dimensions = local.alb, threshold = local.t.p99_response_seconds, comparison = "GreaterThanThreshold" }
      "${var.name}-alb-unhealthy-hosts" = { namespace = local.elb, metric = "UnHealthyHostCount", stat = "Maximum", dimensions = merge(local.alb, { TargetGroup = var.target_group }), threshold = local.t.unhealthy_hosts, comparison = "GreaterThanThreshold" }
    },
    local.ecs ? {
      "${var.name}-compute-cpu"    = { namespace = "AWS/ECS", metric = "CPUUtilization", stat = "Average", dimensions = local.service, threshold = local.t.compute_cpu_percent, comparison = "GreaterThanThreshold" }
      "${var.name}-scaling-at-max" = { namespace = "ECS/ContainerInsights", metric = "RunningTaskCount", stat = "Maximum", dimensions = local.service, threshold = var.max_capacity, comparison = "GreaterThanOrEqualToThreshold" }
      } : {
      "${var.name}-compute-cpu"    = { namespace = "AWS/EC2", metric = "CPUUtilization", stat = "Average", dimensions = local.group, threshold = local.t.compute_cpu_percent, comparison = "GreaterThanThreshold" }
      "${var.name}-scaling-at-max" = { namespace = "AWS/AutoScaling", metric = "GroupInServiceInstances", stat = "Maximum", dimensions = local.group, threshold = var.max_capacity, comparison = "GreaterThanOrEqualToThreshold" }
    },
    {
      "${var.name}-rds-${var.db_identifier}-cpu"          = { namespace = "AWS/RDS", metric = "CPUUtilization", stat = "Average", dimensions = { DBInstanceIdentifier = var.db_identifier }, threshold = local.t.rds_cpu_percent, comparison = "GreaterThanThreshold" }
      "${var.name}-rds-${var.db_identifier}-free-storage" = { namespace = "AWS/RDS", metric = "FreeStorageSpace", stat = "Minimum", dimensions = { DBInstanceIdentifier = var.db_identifier }, threshold = local.t.rds_free_storage_gb * 1073741824, comparison = "LessThanThreshold" }
      "${var.name}-rds-${var.db_identifier}-connections"  = { namespace = "AWS/RDS", metric = "DatabaseConnections", stat = "Maximum", dimensions = { DBInstanceIdentifier = var.db_identifier }, threshold = var.db_connections_threshold, comparison = "GreaterThanThreshold" }
    },
    merge([
      for member in var.cache_members : {
        "${var.name}-redis-${member}-memory"    = { namespace = "AWS/ElastiCache", metric = "DatabaseMemoryUsagePercentage", stat = "Maximum", dimensions = { CacheClusterId = member }, threshold = local.t.redis_memory_percent, comparison = "GreaterThanThreshold" }
        "${var.name}-redis-${member}-evictions" = { namespace = "AWS/ElastiCache", metric = "Evictions", stat = "Sum", dimensions = { CacheClusterId = member }, threshold = local.t.redis_evictions_per_minute, comparison = "GreaterThanThreshold" }
      }
    ]...),
    var.log_group == null ? {} : {
      "${var.name}-log-errors" = { namespace = "phasegate/${var.name}", metric = "ErrorLines", stat = "Sum", dimensions = {}, threshold = local.t.log_errors_per_minute, comparison = "GreaterThanThreshold" }
    },
  )

  # One widget per component, as JSON (the compute widget's metrics differ in shape).
  widget = { type = "metric", width = 12, height = 6 }
  lb     = ["LoadBalancer", var.load_balancer]
  widgets = [
    jsonencode(merge(local.widget, { properties = { title = "ALB requests", region = var.region, stat = "Sum", period = 60, view = "timeSeries", metrics = [concat([local.elb, "RequestCount"], local.lb)] } })),
    jsonencode(merge(local.widget, { properties = { title = "ALB 4xx / 5xx", region = var.region, stat = "Sum", period = 60, view = "timeSeries", metrics = [for m in ["HTTPCode_Target_4XX_Count", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count"] : concat([local.elb, m], local.lb)] } })),
    jsonencode(merge(local.widget, { properties = { title = "ALB latency p50 / p99", region = var.region, stat = "p50", period = 60, view = "timeSeries", metrics = [for s in ["p50", "p99"] : [local.elb, "TargetResponseTime", local.lb[0], local.lb[1], { stat = s }]] } })),
    local.ecs ? jsonencode(merge(local.widget, { properties = { title = "Compute CPU / memory / running tasks", region = var.region, stat = "Average", period = 60, view = "timeSeries", metrics = [
      ["AWS/ECS", "CPUUtilization", "ClusterName", var.ecs_cluster, "ServiceName", var.ecs_service],
      ["AWS/ECS", "MemoryUtilization", "ClusterName", var.ecs_cluster, "ServiceName", var.ecs_service],
      ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.ecs_cluster, "ServiceName", var.ecs_service],
      ] } })) : jsonencode(merge(local.widget, { properties = { title = "Compute CPU / memory / InService instances", region = var.region, stat = "Average", period = 60, view = "timeSeries", metrics = [
      ["AWS/EC2", "CPUUtilization", "AutoScalingGroupName", var.autoscaling_group],
      ["CWAgent", "mem_used_percent", "AutoScalingGroupName", var.autoscaling_group],
      ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", var.autoscaling_group],
    ] } })),
    jsonencode(merge(local.widget, { properties = { title = "RDS CPU / connections / free storage", region = var.region, stat = "Average", period = 60, view = "timeSeries", metrics = [for m in ["CPUUtilization", "DatabaseConnections", "FreeStorageSpace"] : ["AWS/RDS", m, "DBInstanceIdentifier", var.db_identifier]] } })),
    jsonencode(merge(local.widget, { properties = { title = "Redis CPU / memory / evictions", region = var.region, stat = "Average", period = 60, view = "timeSeries", metrics = concat([], [for c in var.cache_members : [for m in ["CPUUtilization", "DatabaseMemoryUsagePercentage", "Evictions"] : ["AWS/ElastiCache", m, "CacheClusterId", c]]]...) } })),
  ]
}

resource "aws_sns_topic" "alerts" {
  name = "${var.name}-alerts"
  tags = var.tags
}

resource "aws_sns_topic_subscription" "alert" {
  for_each  = toset(concat([for e in var.emails : "email ${e}"], [for u in var.https_endpoints : "https ${u}"]))
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = split(" ", each.key)[0]
  endpoint  = split(" ", each.key)[1]
}

resource "aws_cloudwatch_dashboard" "overview" {
  dashboard_name = "${var.name}-overview"
  dashboard_body = "{\"widgets\":[${join(",", local.widgets)}]}"
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each            = local.alarms
  alarm_name          = each.key
  alarm_description   = "phasegate monitoring.enable: ${each.value.metric} of ${var.name}"
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = startswith(each.value.stat, "p") ? null : each.value.stat
  extended_statistic  = startswith(each.value.stat, "p") ? each.value.stat : null
  dimensions          = each.value.dimensions
  period              = 60
  evaluation_periods  = local.t.evaluation_minutes
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_budgets_budget" "monthly" {
  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"
  tags         = var.tags

  cost_filter {
    name   = "TagKeyValue"
    values = [var.budget_cost_filter]
  }

  dynamic "notification" {
    for_each = { FORECASTED = 80, ACTUAL = 100 }
    content {
      notification_type         = notification.key
      comparison_operator       = "GREATER_THAN"
      threshold                 = notification.value
      threshold_type            = "PERCENTAGE"
      subscriber_sns_topic_arns = [aws_sns_topic.alerts.arn]
    }
  }
}

resource "aws_cloudwatch_log_metric_filter" "errors" {
  count          = var.log_group == null ? 0 : 1
  name           = "${var.name}-errors"
  log_group_name = var.log_group
  pattern        = "?ERROR ?\" 500 \" ?\" 502 \" ?\" 503 \" ?\" 504 \""

  metric_transformation {
    name          = "ErrorLines"
    namespace     = "phasegate/${var.name}"
    value         = "1"
    default_value = "0"
  }
}
