"""The Kubernetes deployment (deploy/): rendered, validated and checked offline."""
