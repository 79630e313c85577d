"""Deployment: render the Helm chart, build and watch KubeRay RayJobs, submit jobs to a Ray cluster."""
