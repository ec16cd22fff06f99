"""CSV quirks of the real LUNA16 files, and clear errors for bad tables."""

from __future__ import annotations

import pytest

from lungcad.errors import DataLayoutError
from lungcad.evaluate import compute_froc_files, read_annotations, read_candidates, read_seriesuids

ANN = "seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,0,0,0,10\n1.2.4,10,10,10,6\n"
CAND = "seriesuid,coordX,coordY,coordZ,probability\n1.2.3,1,0,0,0.9\n1.2.4,50,50,50,0.4\n"


def test_extra_and_reordered_columns_and_whitespace(write):
    path = write(
        "cand.csv",
        "\ufeff probability , extra,  coordZ,coordY ,coordX,seriesuid\n"
        " 0.9 , x , 0, 0 , 1 ,  1.2.3  \n0.4,y,50,50,50,1.2.4\n",
    )
    df = read_candidates(path)
    assert list(df.columns) == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    assert df["seriesuid"].tolist() == ["1.2.3", "1.2.4"]
    assert df["coordX"].tolist() == [1.0, 50.0] and df["probability"].tolist() == [0.9, 0.4]


def test_column_names_in_another_case(write):
    df = read_annotations(write("a.csv", "SeriesUID,CoordX,coordy,COORDZ,Diameter_MM\nu,1,2,3,4\n"))
    assert df.iloc[0].tolist() == ["u", 1.0, 2.0, 3.0, 4.0]


def test_numeric_looking_uids_stay_text(write):
    df = read_annotations(write("a.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\n1e5,0,0,0,5\n00123,0,0,0,5\n"))
    assert df["seriesuid"].tolist() == ["1e5", "00123"]


def test_missing_column_names_file_and_column(write):
    path = write("ann.csv", "seriesuid,coordX,coordY,diameter_mm\nu,0,0,5\n")
    with pytest.raises(DataLayoutError, match="no column 'coordZ'") as info:
        read_annotations(path)
    assert str(path) in str(info.value)


def test_candidates_class_column_needs_score_column(write):
    path = write("candidates.csv", "seriesuid,coordX,coordY,coordZ,class\nu,0,0,0,1\nu,5,5,5,0\n")
    with pytest.raises(DataLayoutError, match="--score-column class") as info:
        read_candidates(path)
    assert "no column 'probability'" in str(info.value) and str(path) in str(info.value)
    df = read_candidates(path, score_column="class")
    assert df["probability"].tolist() == [1.0, 0.0]


def test_other_score_column(write):
    path = write("c.csv", "seriesuid,coordX,coordY,coordZ,score\nu,0,0,0,0.3\n")
    with pytest.raises(DataLayoutError, match="--score-column"):
        read_candidates(path)
    assert read_candidates(path, score_column="score")["probability"].tolist() == [0.3]


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf"])
def test_bad_number_names_row_and_column(write, value):
    path = write("c.csv", f"seriesuid,coordX,coordY,coordZ,probability\nu,0,0,0,0.5\nu,0,{value},0,0.5\n")
    with pytest.raises(DataLayoutError, match="column 'coordY', data row 2"):
        read_candidates(path)


def test_empty_uid_is_an_error(write):
    with pytest.raises(DataLayoutError, match="'seriesuid' is empty in data row 1"):
        read_candidates(write("c.csv", "seriesuid,coordX,coordY,coordZ,probability\n ,0,0,0,0.5\n"))


def test_missing_and_empty_files(write, tmp_path):
    with pytest.raises(DataLayoutError, match="file not found"):
        read_candidates(tmp_path / "nope.csv")
    with pytest.raises(DataLayoutError, match="empty"):
        read_candidates(write("empty.csv", ""))
    with pytest.raises(DataLayoutError, match="file not found"):
        read_seriesuids(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3\n1.2.4\n",
        "seriesuid\n1.2.3\n1.2.4\n",
        " 1.2.3 \n\n1.2.4,extra\n",
        "\ufeffSeriesUID\r\n1.2.3\r\n1.2.4\r\n",
    ],
    ids=["no-header", "header", "whitespace-extra-field", "bom-crlf"],
)
def test_seriesuids_with_or_without_header(write, text):
    assert read_seriesuids(write("s.csv", text)) == ["1.2.3", "1.2.4"]


def test_seriesuids_duplicates_and_empty(write):
    with pytest.raises(DataLayoutError, match="listed twice: '1.2.3'"):
        read_seriesuids(write("s.csv", "1.2.3\n1.2.4\n1.2.3\n"))
    with pytest.raises(DataLayoutError, match="no seriesuid"):
        read_seriesuids(write("s2.csv", "seriesuid\n\n"))


def test_excluded_without_diameter_column_is_unknown(write):
    df = read_annotations(write("e.csv", "seriesuid,coordX,coordY,coordZ\nu,0,0,0\n"), excluded=True)
    assert df["diameter_mm"].tolist() == [-1.0]
    with pytest.raises(DataLayoutError, match="diameter_mm"):
        read_annotations(write("a.csv", "seriesuid,coordX,coordY,coordZ\nu,0,0,0\n"))


def test_series_list_scans_absent_from_candidates_count(write):
    r = compute_froc_files(
        write("a.csv", ANN), write("c.csv", CAND), seriesuids=write("s.csv", "1.2.3\n1.2.4\n1.2.5\n1.2.6\n")
    )
    assert r.n_scans == 4 and r.count("fp") == 1 and r.curve.fps[-1] == 0.25


def test_unknown_candidate_ids_are_an_error_naming_them(write):
    cand = write("c.csv", CAND + "9.9.9,0,0,0,0.5\n9.9.8,0,0,0,0.5\n")
    with pytest.raises(DataLayoutError, match="2 scan\\(s\\) not in the series list: '9.9.9', '9.9.8'") as info:
        compute_froc_files(write("a.csv", ANN), cand, seriesuids=write("s.csv", "1.2.3\n1.2.4\n"))
    assert str(cand) in str(info.value) and "--ignore-unknown-ids" in str(info.value)


def test_unknown_candidate_ids_can_be_ignored_as_officially(write):
    from lungcad.evaluate import FrocConfig

    cand = write("c.csv", CAND + "9.9.9,0,0,0,0.5\n")
    r = compute_froc_files(
        write("a.csv", ANN), cand, seriesuids=write("s.csv", "1.2.3\n1.2.4\n"), config=FrocConfig(unknown_ids="ignore")
    )
    assert r.count("fp") == 1 and len(r.match.candidates) == 2


def test_api_frames_need_the_columns(annotations, candidates):
    from lungcad.evaluate import compute_froc

    cand = candidates(("a", 0, 0, 0, 0.5)).rename(columns={"probability": "score"})
    with pytest.raises(DataLayoutError, match="candidates table lacks column\\(s\\) probability"):
        compute_froc(annotations(("a", 0, 0, 0, 5)), cand, ["a"])
