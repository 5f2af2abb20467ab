"""Publishing pages: submit a ``server.json`` (pasted or uploaded), and follow one's own
submissions. Signed-in users only; each sees their own submissions and nobody else's.
The work is ``services.publishing``; these only read the form and show its answer."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from apps.marketplace import server_json
from apps.marketplace.models import Submission
from apps.marketplace.services.publishing import SubmissionRefused, submission_create

SUBMISSIONS_SHOWN = 100


class PublishForm(forms.Form):
    text = forms.CharField(
        label="server.json",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 24, "cols": 80, "spellcheck": "false"}),
        # A little over the validator's limit, so that it (not the form) says how large.
        max_length=server_json.MAX_BYTES * 2,
    )
    file = forms.FileField(label="or upload it", required=False)

    def clean(self) -> dict:
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > server_json.MAX_BYTES:
                raise forms.ValidationError(
                    f"The file is {upload.size} bytes; at most {server_json.MAX_BYTES} are accepted."
                )
            data["document"] = upload.read()
        elif data.get("text", "").strip():
            data["document"] = data["text"]
        else:
            raise forms.ValidationError("Paste your server.json or upload the file.")
        return data


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def publish(request: HttpRequest) -> HttpResponse:
    problems: list[server_json.Problem] = []
    if request.method == "POST":
        form = PublishForm(request.POST, request.FILES)
        if form.is_valid():
            document = form.cleaned_data["document"]
            try:
                submission_create(actor=request.user, text=document)
            except SubmissionRefused as exc:
                problems = exc.problems
                if isinstance(document, bytes):
                    # Shown back in the textarea, so the publisher can fix it there.
                    form = PublishForm(initial={"text": document.decode("utf-8", "replace")[: server_json.MAX_BYTES]})
            else:
                return redirect("marketplace:submissions")
    else:
        form = PublishForm()
    return render(
        request,
        "marketplace/publish.html",
        {"form": form, "problems": problems, "schema_url": server_json.CURRENT_SCHEMA},
        status=400 if problems or (request.method == "POST" and form.errors) else 200,
    )


@login_required
@require_safe
def submissions(request: HttpRequest) -> HttpResponse:
    mine = Submission.objects.filter(submitted_by=request.user).select_related("server").order_by("-created_at")
    return render(request, "marketplace/submissions.html", {"submissions": mine[:SUBMISSIONS_SHOWN]})
