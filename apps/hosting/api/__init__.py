"""REST API for this app: serializers, views and urls under /api/v1/."""
