from django.db import models


class ModelVersion(models.Model):
    """One trained model folder under TFT_MODELS_DIR (models/tft_model_<UTC time>/)."""

    name = models.CharField(max_length=128, unique=True)  # the folder name
    path = models.CharField(max_length=512)
    created_at = models.DateTimeField()
    registered_at = models.DateTimeField(auto_now_add=True)
    metrics = models.JSONField(default=dict, blank=True)
    spec = models.JSONField(default=dict, blank=True)
    # Chosen by an operator; when nobody chose, the newest valid folder is active.
    is_active = models.BooleanField(default=False)
    activated_by_operator = models.BooleanField(default=False)
    valid = models.BooleanField(default=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model_version"
            )
        ]

    def __str__(self) -> str:
        return self.name
