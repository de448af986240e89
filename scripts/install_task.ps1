<#
.SYNOPSIS
    Register a weekday Windows Task Scheduler task that starts the supervisor before
    06:50 New York time, whatever the PC's time zone, across daylight-saving changes.

.DESCRIPTION
    Task Scheduler triggers run on the PC's local clock, but the trading day runs on
    Eastern time (America/New_York), and the US changes to and from daylight-saving
    time on other dates than most of the world. So this script:

      1. computes, for every day of the next 12 months, the local time at which it is
         06:50 ET (the supervisor's day start, five minutes before the first phase at
         06:55 ET);
      2. takes the EARLIEST of those local times, minus -LeadMinutes, as the trigger
         time, so the task never fires late;
      3. maps Monday-Friday in New York to local weekdays (east of New York by more
         than ~17 hours, 06:50 ET is already the next local day).

    On days when the trigger fires early in local time (for example during the weeks
    when only one side of the Atlantic has changed its clocks), the supervisor waits
    for 06:50 ET by itself and shows a countdown. On an exchange holiday it starts,
    says so, and exits 0. If the PC was off at the trigger time, the task starts as
    soon as it can (a late start runs the missed phases at once).

    The task runs only while you are logged on, in a visible console window, so Ctrl+C
    in that window stops the system cleanly. It is stopped after 16 hours at the latest.
    Run the script again after moving the folder or changing the PC's time zone.

.PARAMETER TaskName
    Name of the task (default: DayTradingSupervisor).

.PARAMETER LeadMinutes
    How many minutes before the earliest local 06:50 ET the task fires (default 10).

.PARAMETER Unregister
    Remove the task instead of registering it.

.PARAMETER DryRun
    Print what would be registered, change nothing.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File scripts\install_task.ps1
.EXAMPLE
    powershell -ExecutionPolicy Bypass -File scripts\install_task.ps1 -DryRun
#>
[CmdletBinding()]
param(
    [string]$TaskName = "DayTradingSupervisor",
    [ValidateRange(0, 180)][int]$LeadMinutes = 10,
    [switch]$Unregister,
    [switch]$DryRun
)

$ErrorActionPreference = "Stop"

if ($Unregister) {
    if ($DryRun) { Write-Host "Would remove task '$TaskName'."; exit 0 }
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
    Write-Host "Removed task '$TaskName'."
    exit 0
}

$root = Split-Path -Parent $PSScriptRoot
$bat = Join-Path $root "start_supervisor.bat"
if (-not (Test-Path $bat)) { throw "start_supervisor.bat not found next to the scripts folder ($bat)" }

# Windows calls America/New_York "Eastern Standard Time" (DST included).
$eastern = [System.TimeZoneInfo]::FindSystemTimeZoneById("Eastern Standard Time")
$localZone = [System.TimeZoneInfo]::Local
$dayStartMinutes = 6 * 60 + 50   # 06:50 ET

# Local minus Eastern wall-clock offset, in minutes, at 06:50 ET on each day of a year.
$offsets = @()
$today = [DateTime]::Today
for ($i = 0; $i -lt 366; $i++) {
    $etWall = [DateTime]::SpecifyKind($today.AddDays($i).AddMinutes($dayStartMinutes), "Unspecified")
    $utc = [System.TimeZoneInfo]::ConvertTimeToUtc($etWall, $eastern)
    $localWall = [System.TimeZoneInfo]::ConvertTimeFromUtc($utc, $localZone)
    $offsets += [int][Math]::Round(($localWall - $etWall).TotalMinutes)
}
$minOffset = ($offsets | Measure-Object -Minimum).Minimum
$maxOffset = ($offsets | Measure-Object -Maximum).Maximum

# Trigger: the earliest local 06:50 ET, minus the lead; may cross midnight either way.
$triggerMinutes = $dayStartMinutes + $minOffset - $LeadMinutes
$dayShift = [int][Math]::Floor($triggerMinutes / 1440)
$timeOfDay = $triggerMinutes - $dayShift * 1440
$at = [DateTime]::Today.AddMinutes($timeOfDay)

$etWeekdays = @("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
$names = [Enum]::GetNames([System.DayOfWeek])   # Sunday .. Saturday
$localDays = foreach ($day in $etWeekdays) {
    $index = ([int][Enum]::Parse([System.DayOfWeek], $day) + $dayShift + 7) % 7
    $names[$index]
}

function Format-Local([int]$minutes) {
    $m = (($minutes % 1440) + 1440) % 1440
    "{0:D2}:{1:D2}" -f [int][Math]::Floor($m / 60), ($m % 60)
}

Write-Host "PC time zone: $($localZone.Id)"
Write-Host ("06:50 ET is at {0}-{1} local time over the next 12 months." -f `
    (Format-Local ($dayStartMinutes + $minOffset)), (Format-Local ($dayStartMinutes + $maxOffset)))
Write-Host ("Task '{0}': {1} at {2} local ({3} min before the earliest), then the supervisor" -f `
    $TaskName, ($localDays -join ","), $at.ToString("HH:mm"), $LeadMinutes)
Write-Host "waits for 06:50 ET by itself."

# cmd /c "set NO_PAUSE=1&call <bat>": no pause prompt left hanging in an unattended run.
$argument = "/d /c set NO_PAUSE=1&call `"$bat`""
if ($DryRun) {
    Write-Host "Dry run: would run: cmd.exe $argument (in $root)"
    exit 0
}

$action = New-ScheduledTaskAction -Execute "$env:SystemRoot\System32\cmd.exe" `
    -Argument $argument -WorkingDirectory $root
$trigger = New-ScheduledTaskTrigger -Weekly -DaysOfWeek $localDays -At $at
$settings = New-ScheduledTaskSettingsSet -StartWhenAvailable -AllowStartIfOnBatteries `
    -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew `
    -ExecutionTimeLimit (New-TimeSpan -Hours 16)
$principal = New-ScheduledTaskPrincipal -UserId ([Security.Principal.WindowsIdentity]::GetCurrent().Name) `
    -LogonType Interactive -RunLevel Limited
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger -Settings $settings `
    -Principal $principal -Force `
    -Description "Starts the day-trading supervisor; it waits for 06:50 ET (America/New_York)." | Out-Null
Write-Host "Registered. Check it in Task Scheduler, or run it now with: Start-ScheduledTask -TaskName $TaskName"
