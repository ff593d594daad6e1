/// The deployment's choices where the design leaves one. [`Policy::default`] is the design's
/// default; a deployment changes a knob in its configuration (the gateway's `policy.*`
/// settings, where an unknown knob is an error rather than a silent no-op).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Whether break-the-glass (`ETREAT`/`BTG` with a stated reason) also opens psychotherapy
    /// notes (`PSYTHPN`, confidentiality `V`). Default `false`: notes stay with their author and
    /// the practitioners the patient named, even in an emergency.
    pub notes_open_to_break_the_glass: bool,
    /// Whether a professional acting for treatment (`TREAT`) receives a patient's data other
    /// than notes without a patient permit naming them. Default `true`, as in Kanta: the patient
    /// restricts by denial. With `false`, only the author, a practitioner the patient permitted,
    /// and break-the-glass receive it.
    pub treating_professionals_see_non_note_data: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { notes_open_to_break_the_glass: false, treating_professionals_see_non_note_data: true }
    }
}
