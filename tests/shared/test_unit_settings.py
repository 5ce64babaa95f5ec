import pytest

from intake.settings import IntakeSettings
from shared.settings import SettingsError, load_settings


class TestSettings:
    def test_defaults_put_the_database_under_the_data_folder(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DOUDI_DATA_DIR", "/tmp/somewhere")
        settings = load_settings(IntakeSettings)
        assert settings.database_url == "sqlite+aiosqlite:////tmp/somewhere/intake.db"
        assert settings.port == 8001

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("DOUDI_KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
            ("INTAKE_PORT", "eighty"),
            ("INTAKE_DATABASE_URL", "mysql://x"),
            ("DOUDI_ENV", "staging"),
            ("DOUDI_CONSUMER_MAX_ATTEMPTS", "0"),
            ("DOUDI_LINKAGE_KEY", "c2hvcnQ="),
        ],
    )
    def test_a_bad_setting_is_one_line_naming_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as caught:
            load_settings(IntakeSettings)
        message = str(caught.value)
        assert variable in message
        assert "\n" not in message

    def test_production_requires_an_explicit_database(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DOUDI_ENV", "production")
        monkeypatch.setenv("DOUDI_AUTH_JWKS_URL", "https://idp.example/jwks")
        with pytest.raises(SettingsError, match="database_url"):
            load_settings(IntakeSettings)

    def test_production_refuses_to_run_without_the_identity_providers_keys(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DOUDI_ENV", "production")
        monkeypatch.setenv("INTAKE_DATABASE_URL", "postgresql+asyncpg://db/intake")
        with pytest.raises(SettingsError, match="DOUDI_AUTH_JWKS_URL"):
            load_settings(IntakeSettings)

    def test_production_refuses_the_development_linkage_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DOUDI_ENV", "production")
        monkeypatch.setenv("DOUDI_AUTH_JWKS_URL", "https://idp.example/jwks")
        monkeypatch.setenv("INTAKE_DATABASE_URL", "postgresql+asyncpg://db/intake")
        with pytest.raises(SettingsError, match="DOUDI_LINKAGE_KEY"):
            load_settings(IntakeSettings)

    @pytest.mark.parametrize(
        ("variables", "named"),
        [
            ({"ELIGIBILITY_VERIFICATION_SOURCES": "registry,oracle"}, "ELIGIBILITY_VERIFICATION_SOURCES"),
            ({"ELIGIBILITY_VERIFICATION_SOURCES": "http"}, "ELIGIBILITY_VERIFICATION_URL"),
            ({"ELIGIBILITY_VERIFICATION_REGISTRY": "/no/such/file.toml"}, "ELIGIBILITY_VERIFICATION_REGISTRY"),
        ],
    )
    def test_verification_sources_are_checked_at_start(
        self, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
    ) -> None:
        from eligibility.settings import EligibilitySettings

        for variable, value in variables.items():
            monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError, match=named):
            load_settings(EligibilitySettings)
