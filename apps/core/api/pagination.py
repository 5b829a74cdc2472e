"""Cursor pagination by default: stable under concurrent inserts, cheap at any depth."""

from rest_framework.pagination import CursorPagination


class DefaultPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"
