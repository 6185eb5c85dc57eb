variable "resources_file" {
  description = "Path of the JSON document `nsgsync export json` writes (its `desired` list)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC of the groups; null keeps each group's VpcId from the export (aws.vpcId)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every group and rule; nsgsync's own tags (nsgsync.io/*) win."
  type        = map(string)
  default     = {}
}
