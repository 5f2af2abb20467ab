"""/api/v1/ routes, collected from each app's api/ package."""

urlpatterns: list = []
