from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def home(request):
    return HttpResponse("portal")


@login_required
def invitation_accept(request, secret):
    return HttpResponse("todo")
