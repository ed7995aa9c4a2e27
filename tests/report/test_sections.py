"""Generated sections: one script replaces its own section of a shared file and nothing else."""

from accel.report.sections import carry_sections, replace_section, section_text, sections, update_section


def test_replace_keeps_the_rest_of_the_file():
    text = "# Results\n\nintro\n\n" + section_text("qat", "old") + "\ntail\n"
    new = replace_section(text, "qat", "## QAT\nnew")
    assert new == "# Results\n\nintro\n\n" + section_text("qat", "## QAT\nnew") + "\ntail\n"
    assert replace_section(new, "search", "s").endswith(section_text("search", "s"))
    assert set(sections(replace_section(new, "search", "s"))) == {"qat", "search"}


def test_a_whole_file_rewrite_carries_the_other_scripts_sections():
    old = "# Old table\n\n" + section_text("qat", "trained")
    assert carry_sections(old, "# New table\n") == "# New table\n\n" + section_text("qat", "trained")
    rewritten = "# New table\n\n" + section_text("qat", "retrained")
    assert carry_sections(old, rewritten) == rewritten


def test_update_section_creates_then_replaces(tmp_path):
    path = tmp_path / "RESULTS.md"
    update_section(path, "qat", "first")
    path.write_text("# Head\n\n" + path.read_text())
    update_section(path, "qat", "second")
    assert path.read_text() == "# Head\n\n" + section_text("qat", "second")
