from django.contrib import admin

from apps.accounts.models import ApiToken, Invitation, Membership, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "team", "role", "created_at")
    list_filter = ("role", "team")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "user",
        "key_id",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    # The hash is useless to a reader and the plain value is never stored.
    exclude = ("key_hash",)
    readonly_fields = ("key_id", "created_at", "last_used_at")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("team", "role", "note", "created_by", "created_at", "expires_at", "accepted_by", "revoked_at")
    list_filter = ("role", "team")
    # Only the code's hash is stored, and it is of no use to a reader.
    exclude = ("key_hash",)
    readonly_fields = ("key_id", "created_by", "created_at", "accepted_by", "accepted_at")
