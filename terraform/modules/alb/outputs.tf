output "security_group_id" {
  description = "The ALB's security group (the app admits only it)."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "The app's target group."
  value       = aws_lb_target_group.app.arn
}

output "dns_name" {
  description = "The ALB's DNS name."
  value       = aws_lb.this.dns_name
}
