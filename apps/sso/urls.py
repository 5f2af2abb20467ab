from django.urls import path

from apps.sso import views

app_name = "sso"

urlpatterns = [
    path("", views.company_sign_in, name="company-sign-in"),
]
