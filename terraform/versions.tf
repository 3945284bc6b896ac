terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 6.0"
    }
  }

  # Partial configuration: bucket, key, region and use_lockfile come from
  # `terraform init -backend-config=...` (phasegate's sandbox writes them; see README.md).
  backend "s3" {}
}
