# ECS Fargate: a cluster, the app's task definition (X86_64 or ARM64) and a service behind
# the ALB's target group, with the task execution role that pulls the image and writes logs.
# The service runs on a capacity provider strategy, never a launch type: phase 3's Spot is
# then a change of strategy AWS makes in place with a new deployment (a service moved from a
# launch type to a strategy is one Terraform must replace: an outage).

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid = "PullImage"
    actions = [
      "ecr:GetAuthorizationToken",
      "ecr:BatchCheckLayerAvailability",
      "ecr:GetDownloadUrlForLayer",
      "ecr:BatchGetImage",
    ]
    resources = ["*"] #checkov:skip=CKV_AWS_356:GetAuthorizationToken takes no resource
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.app.arn}:*"]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution${var.role_suffix}"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = merge(var.tags, { Name = "${var.name}-ecs-execution${var.role_suffix}" })
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_cloudwatch_log_group" "app" {
  name              = "/ecs/${var.name}-api"
  retention_in_days = 365
  tags              = merge(var.tags, { Name = "${var.name}-api-logs" })
}

resource "aws_ecs_cluster" "this" {
  name = "${var.name}-cluster"
  tags = merge(var.tags, { Name = "${var.name}-ecs" })

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = var.enable_spot ? ["FARGATE", "FARGATE_SPOT"] : ["FARGATE"]
}

locals {
  # Phase 3 (spot.enable): `spot_fargate_base` tasks always on FARGATE, the rest split
  # weight:spot_weight between FARGATE and FARGATE_SPOT; before it, everything on FARGATE.
  capacity_provider_strategy = var.enable_spot ? [
    { capacity_provider = "FARGATE", base = var.spot_fargate_base, weight = var.spot_fargate_weight },
    { capacity_provider = "FARGATE_SPOT", base = 0, weight = var.spot_fargate_spot_weight },
  ] : [{ capacity_provider = "FARGATE", base = 0, weight = 1 }]
}

resource "aws_ecs_task_definition" "app" {
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "512"
  memory                   = "1024"
  execution_role_arn       = aws_iam_role.execution.arn
  tags                     = merge(var.tags, { Name = "${var.name}-ecs" })

  runtime_platform {
    cpu_architecture        = var.cpu_architecture
    operating_system_family = "LINUX"
  }

  container_definitions = jsonencode([
    {
      name         = "api"
      image        = var.image
      memory       = 1024
      essential    = true
      portMappings = [{ containerPort = var.app_port, hostPort = var.app_port, protocol = "tcp" }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.app.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "api"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "app" {
  name            = "${var.name}-api"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.app.arn
  desired_count   = var.desired_count
  tags            = merge(var.tags, { Name = "${var.name}-ecs" })
  # A new strategy starts no deployment by itself; this starts one with every change.
  force_new_deployment = true

  dynamic "capacity_provider_strategy" {
    for_each = local.capacity_provider_strategy
    content {
      capacity_provider = capacity_provider_strategy.value.capacity_provider
      base              = capacity_provider_strategy.value.base
      weight            = capacity_provider_strategy.value.weight
    }
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = "api"
    container_port   = var.app_port
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.security_group_id]
    assign_public_ip = var.assign_public_ip
  }

  # desired_count is the starting size: once phase 2's target tracking runs the service, AWS
  # sets it, and a plan must not call that drift (nor an apply put it back).
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.this]
}
