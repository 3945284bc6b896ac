output "identifier" {
  description = "The RDS instance identifier."
  value       = aws_db_instance.this.identifier
}

output "arn" {
  description = "The RDS instance's ARN (a cross-region replica's source)."
  value       = aws_db_instance.this.arn
}
