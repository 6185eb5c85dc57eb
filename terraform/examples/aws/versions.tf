terraform {
  # for_each in import blocks (imports.tf) needs Terraform 1.7
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}
