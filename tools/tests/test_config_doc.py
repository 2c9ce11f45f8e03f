from pdfchat_tools import config_doc


def test_configuration_doc_lists_every_variable_as_the_code_defines_it() -> None:
    assert config_doc.DOC_PATH.read_text(encoding="utf-8") == config_doc.render(), (
        "docs/configuration.md is stale: run `.venv/bin/python -m pdfchat_tools.config_doc`"
    )


def test_configuration_doc_names_the_llm_variables() -> None:
    text = config_doc.render()
    for variable in ("PDFCHAT_LLM_BASE_URL", "PDFCHAT_LLM_API_KEY", "PDFCHAT_LLM_MODEL", "PDFCHAT_DATABASE_URL"):
        assert variable in text
