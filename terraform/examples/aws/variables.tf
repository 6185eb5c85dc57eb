variable "region" {
  description = "The AWS Region of the cluster's VPC."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "The VPC of the cluster's pods; null keeps the topology's aws.vpcId."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every group and rule."
  type        = map(string)
  default     = {}
}
