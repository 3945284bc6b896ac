variable "name" {
  description = "Environment name, the prefix of every Name tag."
  type        = string
}

variable "cidr" {
  description = "The VPC's CIDR block."
  type        = string
}

variable "azs" {
  description = "Availability zones, one public and one private subnet each."
  type        = list(string)
}

variable "enable_nat_gateway" {
  description = "One NAT gateway per AZ, routed from that AZ's private route table."
  type        = bool
}

variable "enable_s3_endpoint" {
  description = "The S3 gateway endpoint while NAT runs too (without NAT it is always made)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}
