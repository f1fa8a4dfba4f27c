from django.urls import path

from . import views

urlpatterns = [
    path("", views.hello),
    path("stream", views.stream),
    path("sse", views.sse),
    path("file", views.file),
    path("error", views.error),
    path("background", views.background),
]
