@echo off
rem Start the day-trading supervisor: double-click this file, or let Task Scheduler run it
rem (scripts\install_task.ps1). Arguments are passed on, e.g.:
rem     start_supervisor.bat --date 2025-11-26 --speed 500
rem On first run uv creates the Python environment from uv.lock (and installs Python 3.12
rem if needed). On an error the window stays open so the message can be read; set
rem NO_PAUSE=1 to skip that (the scheduled task does).
setlocal EnableExtensions
cd /d "%~dp0"
title Day-trading supervisor

rem ---- find uv: on PATH, in its usual install folders, or as a Python module ----------
set "UV=uv"
where uv >nul 2>nul
if not errorlevel 1 goto run
if exist "%USERPROFILE%\.local\bin\uv.exe" set "PATH=%USERPROFILE%\.local\bin;%PATH%"
if exist "%USERPROFILE%\.local\bin\uv.exe" goto run
if exist "%USERPROFILE%\.cargo\bin\uv.exe" set "PATH=%USERPROFILE%\.cargo\bin;%PATH%"
if exist "%USERPROFILE%\.cargo\bin\uv.exe" goto run
py -3 -m uv --version >nul 2>nul
if not errorlevel 1 goto use_py_module

echo uv (the tool that runs this project) was not found. Installing it...
py -3 -m pip install --user --quiet --disable-pip-version-check uv
if not errorlevel 1 goto use_py_module
echo pip could not install uv; trying the official installer (PowerShell)...
powershell -NoProfile -ExecutionPolicy Bypass -Command "irm https://astral.sh/uv/install.ps1 | iex"
if exist "%USERPROFILE%\.local\bin\uv.exe" set "PATH=%USERPROFILE%\.local\bin;%PATH%"
if exist "%USERPROFILE%\.local\bin\uv.exe" goto run
echo.
echo ERROR: uv could not be installed. Install it from https://docs.astral.sh/uv/
echo (or install Python 3.12 from python.org first), then start this file again.
set "RC=9"
goto failed

:use_py_module
set "UV=py -3 -m uv"

:run
%UV% run supervisor.py %*
set "RC=%ERRORLEVEL%"
if "%RC%"=="0" exit /b 0

:failed
echo.
echo The supervisor ended with exit code %RC%:
echo   2 = a setting is wrong (see the message above; check .env)
echo   3 = a part of the system is not built yet
echo   4 = another supervisor is already running
echo Logs are in the logs folder. Status: uv run scripts\status.py
if not "%NO_PAUSE%"=="1" pause
exit /b %RC%
