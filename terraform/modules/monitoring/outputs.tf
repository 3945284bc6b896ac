output "topic_arn" {
  description = "The alert topic."
  value       = aws_sns_topic.alerts.arn
}
