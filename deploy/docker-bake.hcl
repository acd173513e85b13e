# The three service images as one build: BuildKit runs the shared chef/planner/builder stages of
# deploy/Dockerfile once and cuts the three runtime targets from the same /out, so the workspace
# is compiled once, not once per image.
#
#   docker buildx bake -f deploy/docker-bake.hcl                      (local build, --load)
#   IMAGE_PREFIX=ghcr.io/OWNER/REPO TAGS=main,sha-abc1234 docker buildx bake -f deploy/docker-bake.hcl --push
#
# CI (.github/workflows/ci.yml) sets IMAGE_PREFIX, TAGS, VERSION and REVISION, and one GitHub
# Actions cache scope for the whole build.

variable "IMAGE_PREFIX" {
  default = "order-pipeline"
}

# Comma-separated tags given to each image.
variable "TAGS" {
  default = "latest"
}

# The OCI labels of the Dockerfile's runtime stage.
variable "VERSION" {
  default = "dev"
}
variable "REVISION" {
  default = "unknown"
}
variable "SOURCE" {
  default = "https://github.com/order-pipeline/order-pipeline"
}

group "default" {
  targets = ["service"]
}

target "service" {
  name       = role
  matrix     = { role = ["order-producer", "order-tracker", "topic-init"] }
  context    = "."
  dockerfile = "deploy/Dockerfile"
  target     = role
  tags       = [for tag in split(",", TAGS) : "${IMAGE_PREFIX}/${role}:${tag}"]
  args = {
    VERSION  = VERSION
    REVISION = REVISION
    SOURCE   = SOURCE
  }
}
