variable "resources_file" {
  description = "Path of the JSON document `nsgsync export json` writes (its `desired` list)."
  type        = string
}

variable "project" {
  description = "The project of the rules; null takes it from each rule's network in the export (gcp.project)."
  type        = string
  default     = null
}

variable "network" {
  description = "The VPC network (name, path or self link); null keeps each rule's network from the export (gcp.network)."
  type        = string
  default     = null
}
