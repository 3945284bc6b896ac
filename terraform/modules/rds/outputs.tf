output "identifier" {
  description = "The RDS instance identifier."
  value       = aws_db_instance.this.identifier
}
