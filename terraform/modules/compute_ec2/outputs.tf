output "autoscaling_group_name" {
  description = "The Auto Scaling group."
  value       = aws_autoscaling_group.app.name
}

output "target_group_arn" {
  description = "The group's instance target group."
  value       = aws_lb_target_group.app.arn
}

output "target_group_arn_suffix" {
  description = "targetgroup/NAME/ID: its CloudWatch dimension."
  value       = aws_lb_target_group.app.arn_suffix
}
